"""Keep a Celery worker running: restart it, with backoff, whenever it dies unexpectedly.

A Celery worker can exit on its own when its broker goes away at the wrong moment (a Redis
restart racing kombu's restore of unacknowledged messages ends in "Unrecoverable error").
``vidgo-stems worker`` therefore runs the worker as a child and starts a new one after an
unexpected exit; the recovery sweep re-dispatches whatever the dead worker held. SIGTERM and
SIGINT are passed on to the child, and a stop asked for that way is never followed by a restart.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import time
from collections.abc import Sequence
from types import FrameType

from vidgo_stems.backoff import backoff_s

log = logging.getLogger(__name__)

#: A child that ran this long without dying counts as healthy: the backoff starts over.
HEALTHY_AFTER_S = 60.0


def restart_delay_s(failures: int, *, base_s: float = 1.0, cap_s: float = 30.0) -> float:
    """Seconds to wait before the next start after ``failures`` quick deaths in a row."""
    return float(backoff_s(failures - 1, base_s=base_s, max_s=cap_s))


class Supervisor:
    def __init__(self, argv: Sequence[str]) -> None:
        self.argv = list(argv)
        self.child: subprocess.Popen[bytes] | None = None
        self.stopping = False

    def _forward(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping = True
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)

    def run(self) -> int:
        """Run until the child exits cleanly or a stop is asked for; returns its exit code."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._forward)
        failures = 0
        while True:
            started = time.monotonic()
            self.child = subprocess.Popen(self.argv)
            code = self.child.wait()
            if self.stopping or code == 0:
                return code
            failures = 1 if time.monotonic() - started > HEALTHY_AFTER_S else failures + 1
            delay = restart_delay_s(failures)
            log.error("worker exited with status %s; starting a new one in %.0fs", code, delay)
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline and not self.stopping:
                time.sleep(0.1)
            if self.stopping:
                return code
