"""What the orchestrator hands each part of the suite: ``run(ctx)`` gets a Context."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import ports, service

Emit = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class Options:
    """The command line's choices that shape a part's load."""

    messages: int
    rounds: int
    sessions: Sequence[int]
    reuse_sessions: bool = False


@dataclass
class Context:
    """One part on one database: where to work, which database, and where results go."""

    workdir: Path
    database: str  # "sqlite" or "postgresql"
    pg_url: str
    options: Options
    # emit(name, values): a result of this part on this database, kept in its JSON file.
    emit: Emit
    free_port: Callable[[], int] = field(default=ports.free_port)

    def fresh_database(self, workdir: Path | None = None) -> str:
        """An empty database of this context's kind; its URL for mailroute."""
        return service.reset_database(self.database, self.pg_url, workdir or self.workdir)
