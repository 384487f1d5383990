"""``vidgo-stems``, the command line. ``main`` is the entry point."""

from vidgo_stems.cli import batch, jobs, manage, ops
from vidgo_stems.cli.app import main

__all__ = ["batch", "jobs", "main", "manage", "ops"]
