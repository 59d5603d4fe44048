"""User-controlled strings are encoded and capped when recorded (no log injection)."""

from __future__ import annotations

from bastion.audit.events import Auditor, Event, EventTypes, encode_event
from bastion.audit.sanitize import encode_data, encode_text


def test_control_characters_and_ansi_escapes_are_escaped() -> None:
    assert encode_text("a\nb\r\tc\x00", 100) == "a\\x0ab\\x0d\\x09c\\x00"
    assert encode_text("\x1b[31mred\x1b[0m", 100) == "\\x1b[31mred\\x1b[0m"
    assert encode_text("del\x7f c1\x9b", 100) == "del\\x7f c1\\x9b"


def test_bidi_and_line_separators_are_escaped() -> None:
    assert encode_text("abc\u202etxt.exe\u2028\u2066", 100) == "abc\\u202etxt.exe\\u2028\\u2066"


def test_backslash_is_escaped_so_the_encoding_is_unambiguous() -> None:
    assert encode_text("\\x1b", 100) == "\\\\x1b"
    assert encode_text("\\x1b", 100) != encode_text("\x1b", 100)


def test_clean_text_is_returned_unchanged() -> None:
    text = "Mozilla/5.0 (X11; Linux x86_64) ünïcödé"
    assert encode_text(text, 512) is text


def test_length_is_capped_after_escaping() -> None:
    assert encode_text("x" * 600, 512) == "x" * 511 + "…"
    assert len(encode_text("\n" * 300, 512)) == 512


def test_data_strings_keys_and_nesting_are_encoded() -> None:
    data = {"pa\nth": "/a\x1b", "list": ["\r", 1, 2.5, None, True], "big": 2**70}
    assert encode_data(data) == {
        "pa\\x0ath": "/a\\x1b",
        "list": ["\\x0d", 1, 2.5, None, True],
        "big": str(2**70),
    }
    deep = {"a": {"b": {"c": {"d": {"e": 1}}}}}
    assert encode_data(deep) == {"a": {"b": {"c": {"d": "…"}}}}
    assert encode_data({"f": float("nan")}) == {"f": "nan"}
    assert len(encode_data({"many": list(range(100))})["many"]) == 64


def test_auditor_encodes_at_record_time() -> None:
    auditor = Auditor()
    seen: list[Event] = []
    auditor.subscribe(seen.append)
    returned = auditor.record(
        EventTypes.GATEWAY_DENIED,
        "denied",
        reason="invalid_token",
        user_agent="evil\n2026-01-01 admin login ok\x1b[2J" + "A" * 600,
        subject="sub\r\n",
        data={"path": "/x\ny"},
    )
    (queued,) = auditor.take(10)
    assert seen == [queued] and returned is queued
    assert queued.user_agent is not None and len(queued.user_agent) == 512
    assert queued.user_agent.startswith("evil\\x0a2026-01-01 admin login ok\\x1b[2J")
    assert queued.subject == "sub\\x0d\\x0a"
    assert queued.data == {"path": "/x\\x0ay"}


def test_encode_event_keeps_a_clean_event() -> None:
    event = Event(type="auth.login", outcome="success", subject="alice")
    assert encode_event(event) is event
