"""The files users deploy with: docker-compose.yml and .env.example (no Docker engine here,
so they are checked by reading, against what the README and the settings promise)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from app.config import Settings

ROOT = Path(__file__).resolve().parents[1]


def _compose() -> dict[str, dict[str, dict[str, object]]]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def test_compose_names_the_services() -> None:
    assert set(_compose()["services"]) == {"postgres", "mailroute", "rspamd"}


def test_compose_rspamd_is_optional_and_unpublished() -> None:
    # `docker compose up` starts only services without a profile; rspamd needs --profile.
    services = _compose()["services"]
    rspamd = services["rspamd"]
    assert rspamd["profiles"] == ["rspamd"]
    assert str(rspamd["image"]).startswith("rspamd/rspamd:")
    assert "ports" not in rspamd
    assert "rspamd-data:/var/lib/rspamd" in rspamd["volumes"]  # type: ignore[operator]
    assert all("profiles" not in services[name] for name in ("postgres", "mailroute"))
    assert "rspamd" not in str(services["mailroute"].get("depends_on"))
    text = (ROOT / "docker-compose.yml").read_text()
    assert "# MAILROUTE_RSPAMD_URL: http://rspamd:11333" in text


def test_compose_postgres_16_with_volume_and_health_check() -> None:
    postgres = _compose()["services"]["postgres"]
    assert postgres["image"] == "postgres:16"
    assert "pgdata:/var/lib/postgresql/data" in postgres["volumes"]  # type: ignore[operator]
    assert "pg_isready" in str(postgres["healthcheck"])
    assert "pgdata" in _compose()["volumes"]


def test_compose_mailroute_publishes_smtp_and_api_and_waits_for_postgres() -> None:
    mailroute = _compose()["services"]["mailroute"]
    assert mailroute["build"] == "."
    assert mailroute["ports"] == ["25:25", "127.0.0.1:8000:8000"]
    assert mailroute["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert mailroute["command"] == ["mailroute", "serve"]
    environment = mailroute["environment"]
    assert isinstance(environment, dict)
    assert environment["MAILROUTE_DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert "@postgres:5432/" in environment["MAILROUTE_DATABASE_URL"]
    assert (environment["MAILROUTE_SMTP_HOST"], environment["MAILROUTE_SMTP_PORT"]) == (
        "0.0.0.0",
        "25",
    )
    assert environment["MAILROUTE_API_HOST"] == "0.0.0.0"


def test_compose_publishes_the_api_on_loopback_only() -> None:
    # The API is for a TLS reverse proxy on the host, not the internet; SMTP is public.
    published = {
        str(port).rpartition(":")[2]: str(port).rpartition(":")[0]
        for port in _compose()["services"]["mailroute"]["ports"]  # type: ignore[attr-defined]
    }
    assert published == {"25": "25", "8000": "127.0.0.1:8000"}


def test_compose_has_no_default_database_password() -> None:
    # ${VAR:?message} makes `docker compose up` stop with the message when it is unset.
    required = "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD in .env}"
    postgres = _compose()["services"]["postgres"]["environment"]
    mailroute = _compose()["services"]["mailroute"]["environment"]
    assert isinstance(postgres, dict) and isinstance(mailroute, dict)
    assert postgres["POSTGRES_PASSWORD"] == required
    assert f"mailroute:{required}@postgres:5432/" in mailroute["MAILROUTE_DATABASE_URL"]
    text = (ROOT / "docker-compose.yml").read_text()
    assert text.count("POSTGRES_PASSWORD:-") == 0
    assert text.count("${POSTGRES_PASSWORD") == text.count(required) == 2


def test_compose_environment_names_real_settings() -> None:
    environment = _compose()["services"]["mailroute"]["environment"]
    assert isinstance(environment, dict)
    known = {f"MAILROUTE_{name.upper()}" for name in Settings.model_fields}
    assert set(environment) <= known


def test_env_example_lists_every_setting() -> None:
    text = (ROOT / ".env.example").read_text()
    listed = set(re.findall(r"^#? ?(MAILROUTE_[A-Z_]+)=", text, flags=re.MULTILINE))
    assert listed == {f"MAILROUTE_{name.upper()}" for name in Settings.model_fields}


def test_dockerfile_copies_what_serve_needs() -> None:
    text = (ROOT / "Dockerfile").read_text()
    for needed in ("COPY app ./app", "COPY migrations ./migrations", 'CMD ["mailroute", "serve"]'):
        assert needed in text
