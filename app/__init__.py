"""mailroute: self-hosted email routing."""

__version__ = "0.1.0"
