"""/v1/domains: adding, listing, changing and removing domains, and their DNS records."""

from __future__ import annotations

import email_validator
import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.engine import session_scope
from app.db.models import Domain
from app.errors import InvalidAddress
from app.resolver import MxRecord
from app.routing import parse_address
from tests.conftest import HOSTNAME
from tests.fakes import FakeResolver
from tests.matchers import Recent

MX_NOTE = "routes the domain's mail to this server"
SPF_NOTE = "SPF: lets this server send as the domain (keep your other senders in it)"
DMARC_NOTE = "DMARC: a starting policy that only monitors; tighten it once reports look right"


def domain_body(name: str, unicode_name: str | None = None, subaddressing: bool = True) -> dict:
    return {
        "name": name,
        "unicode_name": unicode_name or name,
        "subaddressing": subaddressing,
        "created_at": Recent(),
    }


def error(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def dns_records(domain: str, mx: bool | None, spf: bool | None, dmarc: bool | None) -> list:
    return [
        {
            "type": "MX",
            "name": domain,
            "value": f"10 {HOSTNAME}.",
            "in_place": mx,
            "note": MX_NOTE,
        },
        {
            "type": "TXT",
            "name": domain,
            "value": "v=spf1 mx ~all",
            "in_place": spf,
            "note": SPF_NOTE,
        },
        {
            "type": "TXT",
            "name": f"_dmarc.{domain}",
            "value": "v=DMARC1; p=none",
            "in_place": dmarc,
            "note": DMARC_NOTE,
        },
    ]


async def add_domain(client: httpx.AsyncClient, name: str, **fields: object) -> httpx.Response:
    response = await client.post("/v1/domains", json={"name": name, **fields})
    assert response.status_code == 201, response.text
    return response


# --- POST /v1/domains ---------------------------------------------------------------------


async def test_create_domain_returns_the_domain(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/domains", json={"name": "example.org"})

    assert response.status_code == 201
    assert response.json() == domain_body("example.org")


async def test_create_domain_stores_subaddressing_off(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/domains", json={"name": "example.org", "subaddressing": False}
    )

    assert response.status_code == 201
    assert response.json() == domain_body("example.org", subaddressing=False)


async def test_create_domain_normalizes_case_and_trailing_dot(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/domains", json={"name": "Example.ORG."})

    assert response.status_code == 201
    assert response.json() == domain_body("example.org")


async def test_create_domain_stores_unicode_name_as_a_labels(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/domains", json={"name": "Bücher.example"})

    assert response.status_code == 201
    assert response.json() == domain_body("xn--bcher-kva.example", "bücher.example")


async def test_create_domain_refuses_existing_name(client: httpx.AsyncClient) -> None:
    await add_domain(client, "example.org")

    response = await client.post("/v1/domains", json={"name": "example.org"})

    assert response.status_code == 409
    assert response.json() == error("domain_exists", "the domain example.org already exists")


async def test_create_domain_refuses_existing_name_in_other_case(
    client: httpx.AsyncClient,
) -> None:
    await add_domain(client, "example.org")

    response = await client.post("/v1/domains", json={"name": "EXAMPLE.org"})

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "domain_exists"


async def test_create_domain_refuses_unicode_form_of_existing_name(
    client: httpx.AsyncClient,
) -> None:
    await add_domain(client, "xn--bcher-kva.example")

    response = await client.post("/v1/domains", json={"name": "bücher.example"})

    assert response.status_code == 409
    assert response.json() == error(
        "domain_exists", "the domain xn--bcher-kva.example already exists"
    )


async def test_create_domain_refuses_name_without_dot(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/domains", json={"name": "localhost"})

    assert response.status_code == 422
    assert response.json() == error(
        "invalid_domain", "'localhost' is not a fully qualified domain name (it has no dot)"
    )


@pytest.mark.parametrize(
    ("name", "normalized", "suffix"),
    [
        ("alias.test", "alias.test", "test"),
        ("Mail.Example.TEST.", "mail.example.test", "test"),
        ("printer.local", "printer.local", "local"),
        ("shop.localhost", "shop.localhost", "localhost"),
        ("nothing.invalid", "nothing.invalid", "invalid"),
        ("hidden.onion", "hidden.onion", "onion"),
        ("router.home.arpa", "router.home.arpa", "arpa"),
    ],
)
async def test_create_domain_refuses_special_use_name(
    client: httpx.AsyncClient, name: str, normalized: str, suffix: str
) -> None:
    response = await client.post("/v1/domains", json={"name": name})

    assert response.status_code == 422
    assert response.json() == error(
        "invalid_domain",
        f"{normalized} is under .{suffix}, a special-use domain name (RFC 6761) "
        "that no email address may use",
    )


@pytest.mark.parametrize("suffix", email_validator.SPECIAL_USE_DOMAIN_NAMES)
async def test_special_use_names_refused_alike_for_domains_aliases_destinations(
    client: httpx.AsyncClient, suffix: str
) -> None:
    # One list (email-validator's) for all three: a domain accepted here can have aliases.
    domain = await client.post("/v1/domains", json={"name": f"mail.{suffix}"})
    destination = await client.post("/v1/destinations", json={"email": f"me@mail.{suffix}"})

    assert (domain.status_code, domain.json()["error"]["code"]) == (422, "invalid_domain")
    assert (destination.status_code, destination.json()["error"]["code"]) == (
        422,
        "invalid_address",
    )
    with pytest.raises(InvalidAddress):
        parse_address(f"shop@mail.{suffix}")  # what aliases and RCPT TO are parsed with


async def test_special_use_check_allows_the_names_tests_use(client: httpx.AsyncClient) -> None:
    # .example is reserved (RFC 2606) but not special-use for email-validator: addresses
    # on it parse, so domains on it are allowed, as tests and documentation use them.
    await add_domain(client, "inbox.example")
    alias = await client.post(
        "/v1/domains/inbox.example/aliases", json={"local_part": "shop", "action": "drop"}
    )
    destination = await client.post("/v1/destinations", json={"email": "me@inbox.example"})

    assert (alias.status_code, destination.status_code) == (201, 201)


async def test_special_use_domain_added_before_the_check_can_be_deleted(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with session_scope(sessionmaker) as session:
        session.add(Domain(name="alias.test"))

    listed = await client.get("/v1/domains/alias.test")
    deleted = await client.delete("/v1/domains/alias.test")

    assert (listed.status_code, deleted.status_code) == (200, 204)


async def test_create_domain_refuses_ip_address(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/domains", json={"name": "192.0.2.1"})

    assert response.status_code == 422
    assert response.json() == error(
        "invalid_domain", "'192.0.2.1' ends in a numeric label, like an IP address"
    )


async def test_create_domain_refuses_empty_label(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/domains", json={"name": "bad..example"})

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_domain"


async def test_create_domain_refuses_blank_name(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/domains", json={"name": "   "})

    assert response.status_code == 422
    assert response.json() == error("invalid_domain", "a domain name is required")


async def test_create_domain_refuses_name_longer_than_253(client: httpx.AsyncClient) -> None:
    name = ".".join(["a" * 63] * 4) + ".example"  # 263 characters, every label valid

    response = await client.post("/v1/domains", json={"name": name})

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_domain"


async def test_create_domain_needs_a_name(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/domains", json={})

    assert response.status_code == 422
    assert response.json() == {
        "error": {
            "code": "validation_error",
            "message": "body.name: Field required",
            "details": [{"location": "body.name", "message": "Field required"}],
        }
    }


# --- GET /v1/domains ----------------------------------------------------------------------


async def test_list_domains_is_empty_at_first(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/domains")

    assert response.status_code == 200
    assert response.json() == []


async def test_list_domains_orders_by_name(client: httpx.AsyncClient) -> None:
    for name in ("zulu.example", "alpha.example", "mike.example"):
        await add_domain(client, name)

    response = await client.get("/v1/domains")

    assert response.status_code == 200
    assert response.json() == [
        domain_body("alpha.example"),
        domain_body("mike.example"),
        domain_body("zulu.example"),
    ]


# --- GET /v1/domains/{name} ---------------------------------------------------------------


async def test_get_domain_returns_what_create_returned(client: httpx.AsyncClient) -> None:
    created = await add_domain(client, "example.org", subaddressing=False)

    response = await client.get("/v1/domains/example.org")

    assert response.status_code == 200
    assert response.json() == created.json()


async def test_get_domain_accepts_unicode_name(client: httpx.AsyncClient) -> None:
    await add_domain(client, "bücher.example")

    response = await client.get("/v1/domains/bücher.example")

    assert response.status_code == 200
    assert response.json() == domain_body("xn--bcher-kva.example", "bücher.example")


async def test_get_domain_accepts_other_case(client: httpx.AsyncClient) -> None:
    await add_domain(client, "example.org")

    response = await client.get("/v1/domains/EXAMPLE.Org")

    assert response.status_code == 200
    assert response.json()["name"] == "example.org"


async def test_get_domain_unknown_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/domains/nowhere.example")

    assert response.status_code == 404
    assert response.json() == error("domain_not_found", "no domain named nowhere.example")


async def test_get_domain_invalid_name_is_422(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/domains/localhost")

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_domain"


# --- PATCH /v1/domains/{name} -------------------------------------------------------------


async def test_update_domain_turns_subaddressing_off(client: httpx.AsyncClient) -> None:
    await add_domain(client, "example.org")

    response = await client.patch("/v1/domains/example.org", json={"subaddressing": False})

    assert response.status_code == 200
    assert response.json() == domain_body("example.org", subaddressing=False)


async def test_update_domain_is_stored(client: httpx.AsyncClient) -> None:
    await add_domain(client, "example.org")
    await client.patch("/v1/domains/example.org", json={"subaddressing": False})

    response = await client.get("/v1/domains/example.org")

    assert response.json()["subaddressing"] is False


async def test_update_domain_keeps_created_at(client: httpx.AsyncClient) -> None:
    created = await add_domain(client, "example.org")

    response = await client.patch("/v1/domains/example.org", json={"subaddressing": False})

    assert response.json()["created_at"] == created.json()["created_at"]


async def test_update_domain_unknown_is_404(client: httpx.AsyncClient) -> None:
    response = await client.patch("/v1/domains/nowhere.example", json={"subaddressing": False})

    assert response.status_code == 404
    assert response.json() == error("domain_not_found", "no domain named nowhere.example")


async def test_update_domain_needs_subaddressing(client: httpx.AsyncClient) -> None:
    await add_domain(client, "example.org")

    response = await client.patch("/v1/domains/example.org", json={})

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


async def test_update_domain_refuses_renaming(client: httpx.AsyncClient) -> None:
    await add_domain(client, "example.org")

    response = await client.patch("/v1/domains/example.org", json={"name": "example.net"})

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


# --- DELETE /v1/domains/{name} ------------------------------------------------------------


async def test_delete_domain_answers_204_without_body(client: httpx.AsyncClient) -> None:
    await add_domain(client, "example.org")

    response = await client.delete("/v1/domains/example.org")

    assert response.status_code == 204
    assert response.content == b""


async def test_delete_domain_removes_it(client: httpx.AsyncClient) -> None:
    await add_domain(client, "example.org")
    await client.delete("/v1/domains/example.org")

    response = await client.get("/v1/domains/example.org")

    assert response.status_code == 404


async def test_delete_domain_removes_its_aliases(client: httpx.AsyncClient) -> None:
    await add_domain(client, "example.org")
    alias = await client.post(
        "/v1/domains/example.org/aliases", json={"local_part": "shop", "action": "drop"}
    )
    assert alias.status_code == 201, alias.text
    await client.delete("/v1/domains/example.org")
    await add_domain(client, "example.org")

    response = await client.get("/v1/domains/example.org/aliases/shop")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "alias_not_found"


async def test_delete_domain_unknown_is_404(client: httpx.AsyncClient) -> None:
    response = await client.delete("/v1/domains/nowhere.example")

    assert response.status_code == 404
    assert response.json() == error("domain_not_found", "no domain named nowhere.example")


async def test_delete_domain_leaves_other_domains(client: httpx.AsyncClient) -> None:
    await add_domain(client, "example.org")
    await add_domain(client, "example.net")
    await client.delete("/v1/domains/example.org")

    response = await client.get("/v1/domains")

    assert [d["name"] for d in response.json()] == ["example.net"]


# --- GET /v1/domains/{name}/dns -----------------------------------------------------------


async def test_domain_dns_all_records_in_place(
    client: httpx.AsyncClient, resolver: FakeResolver
) -> None:
    await add_domain(client, "example.org")
    resolver.mx_records["example.org"] = [MxRecord(10, HOSTNAME)]
    resolver.txt_records["example.org"] = ["v=spf1 mx ~all"]
    resolver.txt_records["_dmarc.example.org"] = ["v=DMARC1; p=reject"]

    response = await client.get("/v1/domains/example.org/dns")

    assert response.status_code == 200
    assert response.json()[:3] == dns_records("example.org", mx=True, spf=True, dmarc=True)


async def test_domain_dns_nothing_published(client: httpx.AsyncClient) -> None:
    await add_domain(client, "example.org")  # the resolver knows nothing: NXDOMAIN

    response = await client.get("/v1/domains/example.org/dns")

    assert response.status_code == 200
    assert response.json()[:3] == dns_records("example.org", mx=False, spf=False, dmarc=False)


async def test_domain_dns_lookup_failures_are_null(
    client: httpx.AsyncClient, resolver: FakeResolver
) -> None:
    await add_domain(client, "example.org")
    resolver.failing |= {"example.org", "_dmarc.example.org"}

    response = await client.get("/v1/domains/example.org/dns")

    assert response.status_code == 200
    assert response.json()[:3] == dns_records("example.org", mx=None, spf=None, dmarc=None)


async def test_domain_dns_mx_to_another_host_is_not_in_place(
    client: httpx.AsyncClient, resolver: FakeResolver
) -> None:
    await add_domain(client, "example.org")
    resolver.mx_records["example.org"] = [MxRecord(10, "mx.elsewhere.example")]

    response = await client.get("/v1/domains/example.org/dns")

    assert response.json()[0]["in_place"] is False


async def test_domain_dns_mx_among_others_is_in_place(
    client: httpx.AsyncClient, resolver: FakeResolver
) -> None:
    await add_domain(client, "example.org")
    resolver.mx_records["example.org"] = [
        MxRecord(5, "mx.elsewhere.example"),
        MxRecord(20, HOSTNAME),
    ]

    response = await client.get("/v1/domains/example.org/dns")

    assert response.json()[0]["in_place"] is True


async def test_domain_dns_spf_without_mx_is_not_in_place(
    client: httpx.AsyncClient, resolver: FakeResolver
) -> None:
    await add_domain(client, "example.org")
    resolver.txt_records["example.org"] = ["v=spf1 include:_spf.elsewhere.example ~all"]

    response = await client.get("/v1/domains/example.org/dns")

    assert response.json()[1]["in_place"] is False


async def test_domain_dns_spf_with_qualified_mx_is_in_place(
    client: httpx.AsyncClient, resolver: FakeResolver
) -> None:
    await add_domain(client, "example.org")
    resolver.txt_records["example.org"] = ["google-site-verification=abc", "v=spf1 +mx -all"]

    response = await client.get("/v1/domains/example.org/dns")

    assert response.json()[1]["in_place"] is True


async def test_domain_dns_other_txt_is_not_dmarc(
    client: httpx.AsyncClient, resolver: FakeResolver
) -> None:
    await add_domain(client, "example.org")
    resolver.txt_records["_dmarc.example.org"] = ["not a dmarc record"]

    response = await client.get("/v1/domains/example.org/dns")

    assert response.json()[2]["in_place"] is False


async def test_domain_dns_only_dmarc_lookup_failed(
    client: httpx.AsyncClient, resolver: FakeResolver
) -> None:
    await add_domain(client, "example.org")
    resolver.mx_records["example.org"] = [MxRecord(10, HOSTNAME)]
    resolver.txt_records["example.org"] = ["v=spf1 mx ~all"]
    resolver.failing.add("_dmarc.example.org")

    response = await client.get("/v1/domains/example.org/dns")

    assert response.json()[:3] == dns_records("example.org", mx=True, spf=True, dmarc=None)


async def test_domain_dns_uses_a_labels(client: httpx.AsyncClient, resolver: FakeResolver) -> None:
    await add_domain(client, "bücher.example")

    response = await client.get("/v1/domains/bücher.example/dns")

    assert response.json()[:3] == dns_records("xn--bcher-kva.example", False, False, False)
    assert ("MX", "xn--bcher-kva.example") in resolver.queries


async def test_domain_dns_unknown_domain_is_404(
    client: httpx.AsyncClient, resolver: FakeResolver
) -> None:
    response = await client.get("/v1/domains/nowhere.example/dns")

    assert response.status_code == 404
    assert response.json() == error("domain_not_found", "no domain named nowhere.example")
    assert resolver.queries == []
