from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import SessionDep
from app.api.schemas.activity import (
    ActivityPage,
    ActivityPublic,
    ArcResult,
    DkimResult,
    DmarcResult,
    SpamAction,
    SpfResult,
    StatusName,
)
from app.api.schemas.base import IsoDatetime, Line
from app.routing import normalize_domain
from app.services import activity

router = APIRouter(prefix="/activity", tags=["activity"])


@router.get("", summary="Page through the activity log")
async def list_activity(
    session: SessionDep,
    domain: Annotated[Line | None, Query(max_length=300)] = None,
    address: Annotated[Line | None, Query(max_length=320)] = None,
    status: StatusName | None = None,
    since: IsoDatetime | None = None,
    spf: SpfResult | None = None,
    dkim: DkimResult | None = None,
    dmarc: DmarcResult | None = None,
    arc: ArcResult | None = None,
    spam_action: SpamAction | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before: Annotated[int | None, Query(ge=1, description="next_before of the last page")] = None,
) -> ActivityPage:
    """Messages received, refused or dropped, and every delivery attempt, newest first;
    filterable by the inbound checks' verdicts, e.g. ``?dmarc=fail``."""
    where = activity.Filter(
        domain=normalize_domain(domain) if domain else None,
        address=address,
        status=status,
        since=since,
        spf=spf,
        dkim=dkim,
        dmarc=dmarc,
        arc=arc,
        spam_action=spam_action,
    )
    rows = await activity.page(session, where, limit=limit, before=before)
    return ActivityPage(
        items=[ActivityPublic.model_validate(r, from_attributes=True) for r in rows],
        next_before=rows[-1].id if len(rows) == limit else None,
    )
