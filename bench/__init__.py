"""mailroute's benchmark suite: ``python -m bench`` (or ``make bench``); see README.md."""
