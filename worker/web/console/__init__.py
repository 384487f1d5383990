"""The operator console at /console on the gateway: overview, batches, failures, jobs.

Same process and settings as the gateway; every figure comes from the ledger's indexes and
counters in Redis. Sign-in and sessions: :mod:`.access`; the HTTP side: :mod:`.routes`.
"""

from vidgo_stems.web.console.routes import add_console

__all__ = ["add_console"]
