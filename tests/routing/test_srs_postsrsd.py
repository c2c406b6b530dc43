"""Our SRS against a real postsrsd with the same secret: each reverses what the other
rewrote, and refuses what the other would refuse (tcp_table protocol, tests.peers)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from app.routing import parse_address
from app.routing.srs import Srs, SrsInvalid
from tests.peers.postsrsd import Postsrsd

SECRET = "shared-srs-secret-0123456789"
HOST = "mx.mailroute.example"


@pytest.fixture(scope="module")
def postsrsd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postsrsd]:
    secret_file = tmp_path_factory.mktemp("postsrsd") / "secret"
    secret_file.write_text(SECRET + "\n")
    server = Postsrsd(secret_file, HOST)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def srs() -> Srs:
    return Srs(SECRET, HOST)


def reverse(srs: Srs, address: str) -> str:
    return srs.reverse(parse_address(address))


@pytest.mark.parametrize(
    "sender", ["alice@sender.example", "Bob.Smith+tag@Sender.Example", "x=y@z.example"]
)
def test_srs_forward_is_what_postsrsd_writes(postsrsd: Postsrsd, srs: Srs, sender: str) -> None:
    assert srs.forward(sender) == postsrsd.forward(sender)


def first_hop(sender: str) -> str:
    """``sender`` as another forwarder with a secret of its own rewrote it."""
    return Srs("first-hop-secret-0123456789", "hop1.example").forward(sender)


def test_srs_srs1_is_what_postsrsd_writes(postsrsd: Postsrsd, srs: Srs) -> None:
    srs0 = first_hop("alice@sender.example")
    assert srs.forward(srs0) == postsrsd.forward(srs0)


def test_srs_reverses_what_postsrsd_wrote(postsrsd: Postsrsd, srs: Srs) -> None:
    written = postsrsd.forward("alice@sender.example")
    assert written is not None
    assert reverse(srs, written) == "alice@sender.example"
    assert reverse(srs, written.lower()) == "alice@sender.example"
    srs0 = first_hop("alice@sender.example")
    written = postsrsd.forward(srs0)
    assert written is not None and written.startswith("SRS1=")
    assert reverse(srs, written) == srs0


def test_srs_postsrsd_reverses_what_we_wrote(postsrsd: Postsrsd, srs: Srs) -> None:
    ours = srs.forward("alice@sender.example")
    assert postsrsd.reverse(ours) == "alice@sender.example"
    srs0 = first_hop("alice@sender.example")
    assert postsrsd.reverse(srs.forward(srs0)) == srs0


def test_srs_tampered_address_refused_by_both(postsrsd: Postsrsd, srs: Srs) -> None:
    genuine = srs.forward("alice@sender.example")
    tampered = genuine.replace("=alice@", "=mallory@")
    assert postsrsd.reverse(tampered) is None
    with pytest.raises(SrsInvalid):
        reverse(srs, tampered)


@pytest.mark.parametrize("length", [1, 2, 3])
def test_srs_truncated_hash_refused_by_both(postsrsd: Postsrsd, srs: Srs, length: int) -> None:
    # What a guesser finds first: the real hash cut short (srslib took any length).
    genuine = srs.forward("victim@victim.example")
    truncated = re.sub(r"^SRS0=(\w|[+/]){4}=", lambda m: m[0][: 5 + length] + "=", genuine)
    assert truncated != genuine
    assert postsrsd.reverse(truncated) is None
    with pytest.raises(SrsInvalid):
        reverse(srs, truncated)
