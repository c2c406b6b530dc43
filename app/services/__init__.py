"""Use cases over the database. Services flush, never commit: the edges own the unit of work."""
