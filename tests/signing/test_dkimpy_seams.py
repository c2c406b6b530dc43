"""What app.signing.dkimpy_seams relies on in dkimpy is still there, as we use it: a signer
built from a header section and a body given apart holds what dkimpy's own parser makes of
the whole message. After a dkimpy upgrade a failure here names what moved."""

from __future__ import annotations

import dkim
import pytest

from app.message import header_section
from app.signing import dkimpy_seams

MESSAGES = {
    "crlf": b"From: a@b.example\r\nSubject: one\r\n two\r\n\r\nline 1\r\n\r\nline 2\r\n\r\n\r\n",
    "bare-lf-in-body": b"From: a@b.example\r\n\r\nline 1\nline 2\r\nline 3\n",
    "lf-only": b"From: a@b.example\nTo: c@d.example\n\nbody\n",
    "empty-body": b"From: a@b.example\r\n\r\n",
    "no-empty-line": b"From: a@b.example\r\nTo: c@d.example\r\n",
    "bare-cr": b"From: a@b.example\r\n\r\na\rb\r\n",
}


def test_dkimpy_seams_every_member_is_checked() -> None:
    assert set(dkimpy_seams.TOUCHED) == {"DomainSigner.body", "DomainSigner.headers"}


@pytest.mark.parametrize("content", MESSAGES.values(), ids=MESSAGES.keys())
@pytest.mark.parametrize("build", [dkimpy_seams.dkim_signer, dkimpy_seams.arc_signer])
def test_dkimpy_seams_signer_holds_what_dkimpy_parses(content: bytes, build) -> None:
    own = dkim.DKIM(content)
    head = header_section(content)
    body = dkimpy_seams.body_of(content, head)
    assert body is not None
    ours = build(head, body)
    assert ours.body == own.body, "dkimpy's DomainSigner.body is no longer the body it hashes"
    assert ours.headers == own.headers, "dkimpy's DomainSigner.headers changed shape"


def test_dkimpy_seams_body_of_a_cut_header_section_is_none() -> None:
    content = b"From: a@b.example\r\nSubject: long\r\n\r\nbody\r\n"
    assert dkimpy_seams.body_of(content, content[:10]) is None
    assert dkimpy_seams.body_of(bytearray(content), b"From: a@b.example\r\n") is None


def test_dkimpy_seams_body_of_accepts_a_bytearray() -> None:
    content = MESSAGES["crlf"]
    assert (
        dkimpy_seams.body_of(bytearray(content), header_section(content)) == dkim.DKIM(content).body
    )
