"""Settings.smtp_process_count: how many processes take SMTP sessions under `serve`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.config import SettingsError, load_settings

SQLITE = "sqlite+aiosqlite:///./data/mailroute.db"
POSTGRES = "postgresql+asyncpg://mailroute@db.example/mailroute"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No MAILROUTE_* from the outside, and no .env from the working directory."""
    for name in list(os.environ):
        if name.startswith("MAILROUTE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_smtp_process_count_on_sqlite_is_one_when_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 7)
    assert load_settings(database_url=SQLITE).smtp_process_count == 1


def test_smtp_process_count_on_postgres_leaves_one_cpu_when_unset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 7)
    assert load_settings(database_url=POSTGRES).smtp_process_count == 6


def test_smtp_process_count_on_postgres_on_one_cpu_is_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert load_settings(database_url=POSTGRES).smtp_process_count == 1


def test_smtp_process_count_on_postgres_without_known_cpu_count_is_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert load_settings(database_url=POSTGRES).smtp_process_count == 1


@pytest.mark.parametrize("database_url", [SQLITE, POSTGRES])
def test_smtp_process_count_is_the_setting_when_set(
    monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 7)
    monkeypatch.setenv("MAILROUTE_SMTP_PROCESSES", "3")
    assert load_settings(database_url=database_url).smtp_process_count == 3


@pytest.mark.parametrize("value", ["0", "65", "two"])
def test_smtp_processes_refuses_a_bad_value(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("MAILROUTE_SMTP_PROCESSES", value)
    with pytest.raises(SettingsError, match="MAILROUTE_SMTP_PROCESSES"):
        load_settings()
