"""Property-based checks of the whole API against its own OpenAPI document (schemathesis).

Every operation gets valid and invalid data, with a live token; each answer must not be a
5xx, must use a status code and a body shape the document declares, and invalid input must
be refused. Runs on both databases; Hypothesis is derandomized and keeps no example
database, so a run is repeatable and writes nothing into the tree.

The test is synchronous: schemathesis drives the ASGI app through Starlette's TestClient,
which runs each call on an event loop of its own, so the engine here holds no pooled
connection across loops (NullPool).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir
from schemathesis import Case, GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.app import create_app
from app.api.context import ApiContext
from app.db.engine import create_engine, create_sessionmaker, session_scope
from app.db.models import Base
from app.services import aliases, destinations, domains, tokens
from app.services.destinations import MailIdentity
from tests.conftest import HOSTNAME, PUBLIC_URL
from tests.fakes import FakeResolver

# Hypothesis keeps caches (not examples: database=None below) beside the tree unless told.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "mailroute-hypothesis")
MAX_EXAMPLES = 8  # generated cases per operation and database, on top of its coverage cases
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


async def seed(session: AsyncSession) -> None:
    """Something to find: the schema's examples name these, so some cases reach past 404."""
    await domains.create_domain(session, "example.org")
    await destinations.add_verified_destination(session, "me@inbox.example")
    await aliases.create_alias(
        session, "example.org", local_part="shop", destinations=["me@inbox.example"]
    )


@pytest.fixture
def fuzz_database(database_url: str) -> Iterator[tuple[ApiContext, tokens.NewToken]]:
    """A context on an emptied database, with one live token for the fuzzer."""
    engine = create_engine(database_url, pooled=False)
    sessionmaker = create_sessionmaker(engine)

    async def prepare() -> tokens.NewToken:
        if engine.dialect.name == "postgresql":
            names = ", ".join(t.name for t in Base.metadata.sorted_tables)
            async with engine.begin() as connection:
                await connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        async with session_scope(sessionmaker) as session:
            await seed(session)
            return await tokens.create_token(session, "schemathesis")

    new = asyncio.run(prepare())
    resolver = FakeResolver()
    resolver.add_mailbox_domain("inbox.example")
    identity = MailIdentity(hostname=HOSTNAME, public_url=PUBLIC_URL)
    yield ApiContext(sessionmaker=sessionmaker, resolver=resolver, identity=identity), new
    asyncio.run(engine.dispose())


@pytest.fixture
def fuzz_app(fuzz_database: tuple[ApiContext, tokens.NewToken]) -> FastAPI:
    return create_app(fuzz_database[0])


@pytest.fixture
def fuzz_token(fuzz_database: tuple[ApiContext, tokens.NewToken]) -> tokens.NewToken:
    return fuzz_database[1]


# Serving the document touches no context, so it is read from an app built with placeholders;
# each case is then sent to the fixture's app on a real database.
schema = schemathesis.openapi.from_asgi(
    "/openapi.json",
    create_app(ApiContext(sessionmaker=None, resolver=FakeResolver(), identity=None)),  # type: ignore[arg-type]
)
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=MAX_EXAMPLES
)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_schemathesis_api_conforms_to_its_schema(
    case: Case, fuzz_app: FastAPI, fuzz_token: tokens.NewToken
) -> None:
    if case.method == "DELETE" and case.path == "/v1/tokens/{token_id}":
        if str((case.path_parameters or {}).get("token_id")) == str(fuzz_token.token.id):
            return  # revoking the fuzzer's own token would leave only 401s to check
    case.call_and_validate(
        app=fuzz_app, headers={"Authorization": f"Bearer {fuzz_token.secret}"}, checks=CHECKS
    )
