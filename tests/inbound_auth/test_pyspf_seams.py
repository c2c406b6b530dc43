"""What app.inbound_auth.pyspf_seams relies on in pyspf is still there, as we use it.

After a pyspf upgrade a failure here names what moved, before SPF quietly goes back to the
system's resolver (or starts warning on every query)."""

from __future__ import annotations

import inspect

import pytest
import spf

from app.inbound_auth import pyspf_seams


def test_pyspf_seams_every_member_is_checked() -> None:
    assert set(pyspf_seams.TOUCHED) == {"DNSLookup", "query.dns", "TempError"}


def test_pyspf_seams_dnslookup_is_ours() -> None:
    assert spf.DNSLookup is pyspf_seams.lookup, "spf.DNSLookup is no longer our replacement"


def test_pyspf_seams_dnslookup_contract_unchanged() -> None:
    """pyspf's own dnspython function, which ours stands in for, has the parameters the
    caller passes (name, qtype, strict, timeout)."""
    own = getattr(spf, "DNSLookup_dnspython", None)
    assert inspect.isfunction(own), "spf.DNSLookup_dnspython is gone: re-read pyspf's DNS"
    found = tuple(inspect.signature(own).parameters)
    assert found[:2] == ("name", "qtype"), f"spf.DNSLookup_dnspython{found}"
    assert len(found) == 4, f"spf.DNSLookup_dnspython{found}: expected 4 parameters"


def test_pyspf_seams_query_dns_calls_the_global() -> None:
    """query.dns looks the global up on every call, with these arguments, and reads
    ((name, qtype), value) pairs from it."""
    source = inspect.getsource(spf.query.dns)
    assert "DNSLookup(name, qtype, self.strict, timeout)" in source, (
        "spf.query.dns no longer calls DNSLookup(name, qtype, self.strict, timeout)"
    )
    assert "for k, v in DNSLookup(" in source, "spf.query.dns reads DNSLookup differently"


def test_pyspf_seams_temperror_is_answered() -> None:
    """A TempError from DNS is caught by query.check and becomes temperror."""
    assert issubclass(spf.TempError, Exception)
    assert "except TempError" in inspect.getsource(spf.query.check), (
        "spf.query.check no longer turns a TempError into temperror"
    )
    assert "querytime" in inspect.signature(spf.query).parameters, "spf.query lost querytime"


def test_pyspf_seams_lookup_outside_a_check_refuses() -> None:
    with pytest.raises(RuntimeError, match="outside"):
        pyspf_seams.lookup("example.org", "TXT")
