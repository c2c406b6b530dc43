from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict
from sqlalchemy import text

from app.api.deps import SessionDep

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str

    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})


@router.get("/healthz", summary="Health check")
async def healthz(session: SessionDep) -> Health:
    """``ok`` when the API can reach its database (503 otherwise); no token needed."""
    await session.execute(text("SELECT 1"))
    return Health(status="ok")
