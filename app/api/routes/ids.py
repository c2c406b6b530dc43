"""Path parameters for numeric ids, bounded so the database never sees an out-of-range one."""

from typing import Annotated

from fastapi import Path

MAX_ID = 2**31 - 1  # INTEGER on PostgreSQL

Id = Annotated[int, Path(ge=1, le=MAX_ID)]
