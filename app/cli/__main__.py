"""``python -m app.cli``, as serve starts its children (app.supervisor)."""

from app.cli import main

main()
