"""The fast path for MAIL/RCPT paths (SIMPLE_PATH in app.smtp.paths): where it matches,
it must answer what aiosmtpd's parser (Python's RFC 5322 parser) would.

Generated paths are deterministic (derandomize) and keep no example database.
"""

from __future__ import annotations

import pytest
from aiosmtpd.smtp import SMTP
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.smtp import replies
from app.smtp.paths import SIMPLE_PATH
from app.smtp.protocol import MailrouteSMTP
from tests.smtp.conftest import LiveSmtp, in_thread

ATEXT = "aZ09!#$%&'*+/=?^_`{|}~-"  # RFC 5322 3.2.3, a few letters and digits for all
ALPHABET = ATEXT + '.@<>[]" \t:'  # the brief's: atext, dots, @, brackets, quotes, SP, TAB, ":"
OTHER_SPACE = "\r\n\x0b\x0c\xa0"  # whitespace that is neither SP nor TAB
EXAMPLES = 1000
Answer = tuple[str | None, str | None]


class Parser:
    """What aiosmtpd's _getaddr needs of its SMTP object."""

    local_part_limit = 0


def parsed(path: str) -> Answer:
    """aiosmtpd's answer, with the parameters' leading SP and TAB removed (as the fast path
    removes them)."""
    address, rest = SMTP._getaddr(Parser(), path)  # type: ignore[arg-type]
    return address, None if rest is None else rest.lstrip(" \t")


def fast(path: str) -> Answer | None:
    match = SIMPLE_PATH.fullmatch(path)
    return None if match is None else (match.group(1), match.group(2).lstrip(" \t"))


def session_getaddr(path: str, *, fast_path: bool) -> Answer:
    """MailrouteSMTP.parse_path; a local-part limit turns the fast path off."""
    session = object.__new__(MailrouteSMTP)
    session.local_part_limit = 0 if fast_path else 10**6
    return session.parse_path(path)


def text(alphabet: str, min_size: int = 0, max_size: int = 10) -> st.SearchStrategy[str]:
    return st.text(alphabet, min_size=min_size, max_size=max_size)


def likely_paths(extra: str = "") -> st.SearchStrategy[str]:
    """Arbitrary strings, and strings shaped like <local@domain>rest, which the fast path
    matches often enough to be tested; as the server passes them, stripped (aiosmtpd's
    _strip_command_keyword strips what follows "FROM:" and "TO:")."""
    shaped = st.builds(
        "{}<{}@{}>{}".format,
        text(" \t", max_size=2),
        text(ATEXT + '."', min_size=1),
        text("az09-.[]", min_size=1),
        text(ALPHABET + extra),
    )
    return st.one_of(text(ALPHABET + extra, max_size=30), shaped).map(str.strip)


@pytest.fixture
def matched() -> list[str]:
    """The paths the fast path matched: a property over too few of them proves little."""
    return []


def test_simple_path_agrees_with_aiosmtpd_wherever_it_matches(matched: list[str]) -> None:
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(path=likely_paths())
    def check(path: str) -> None:
        answer = fast(path)
        if answer is not None:
            matched.append(path)
            assert answer == parsed(path)
            assert session_getaddr(path, fast_path=True) == session_getaddr(path, fast_path=False)

    check()
    assert len(matched) > EXAMPLES // 10


def test_simple_path_parameters_agree_with_aiosmtpd_around_any_whitespace(
    matched: list[str],
) -> None:
    """With other whitespace after the path, aiosmtpd's rest may start later, but the
    parameters the server takes from it (``rest.split()``) are the same."""

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(path=likely_paths(OTHER_SPACE))
    def check(path: str) -> None:
        answer = fast(path)
        if answer is not None:
            matched.append(path)
            address, rest = parsed(path)
            assert (answer[0], str(answer[1]).split()) == (address, str(rest).split())

    check()
    assert len(matched) > EXAMPLES // 10


@pytest.mark.parametrize(
    ("path", "answer"),
    [
        ("<alice@sender.example>", ("alice@sender.example", "")),
        (
            "<Alice.B@Sender.Example> SIZE=100 BODY=8BITMIME",
            ("Alice.B@Sender.Example", "SIZE=100 BODY=8BITMIME"),
        ),
        ("<a@b>\t \tSIZE=1", ("a@b", "SIZE=1")),
        ("\t <x@y-z.example>", ("x@y-z.example", "")),
        ("<!#$%&'*+/=?^_`{|}~-@d0.example>", ("!#$%&'*+/=?^_`{|}~-@d0.example", "")),
        ("<a.b.c@d>X", ("a.b.c@d", "X")),
        ("<a@b>>", ("a@b", ">")),
        ("<a@b><c@d>", ("a@b", "<c@d>")),
    ],
)
def test_simple_path_matches_dot_atom_paths(path: str, answer: Answer) -> None:
    assert (fast(path), parsed(path)) == (answer, answer)


@pytest.mark.parametrize(
    "path",
    [
        "",
        "<>",
        "alice@sender.example",  # no brackets: the parser's business
        "<alice@sender.example",
        '<"al ice"@sender.example>',
        "<alice@[192.0.2.1]>",
        "<@relay.example:alice@sender.example>",  # a source route (RFC 5321 4.1.2)
        "<.alice@sender.example>",
        "<alice.@sender.example>",
        "<al..ice@sender.example>",
        "<alice@-sender.example>",
        "<alice@sender-.example>",
        "<alice@sender..example>",
        "<alice@sender.example.>",
        "<alice@@sender.example>",
        "<alice>",
        "<al ice@sender.example>",
    ],
)
def test_simple_path_leaves_other_paths_to_the_parser(path: str) -> None:
    assert fast(path) is None


@pytest.mark.parametrize(
    "path", ["<alice@sender.example> SIZE=10", "<a@b>", "<a@b>>", "<a@b><c@d>", "<a.b@c.d>X"]
)
def test_session_getaddr_answers_the_same_with_and_without_the_fast_path(path: str) -> None:
    assert session_getaddr(path, fast_path=True) == session_getaddr(path, fast_path=False)


@pytest.mark.parametrize("path", ["<alice@sender.example>(comment) SIZE=10", "<a@b>(c)"])
def test_session_getaddr_comment_after_path_is_the_same_with_the_fast_path(path: str) -> None:
    assert session_getaddr(path, fast_path=True) == session_getaddr(path, fast_path=False)


async def test_mail_with_comment_after_path_is_a_bad_sender(smtp_server: LiveSmtp) -> None:
    def run() -> tuple[int, bytes]:
        with smtp_server.client() as client:
            client.ehlo()
            return client.docmd("MAIL FROM:<alice@sender.example>(comment)")

    code, _, text = replies.S501_BAD_SENDER.partition(" ")
    assert await in_thread(run) == (int(code), text.encode())
