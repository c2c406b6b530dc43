"""The management REST API (FastAPI)."""
