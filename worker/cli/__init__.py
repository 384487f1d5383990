"""``vidgo-stems``, the command line. ``main`` is the entry point."""

from worker.cli import batch, jobs, manage, ops
from worker.cli.app import main

__all__ = ["batch", "jobs", "main", "manage", "ops"]
