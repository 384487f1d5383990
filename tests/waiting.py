"""Waiting for a condition with a deadline, instead of sleeping a fixed time.

``wait_until`` polls like :func:`vidgo_stems.devstack.local.wait_for` (which the stack helpers in
:mod:`tests.support` use) and, when it gives up, says what it waited for and what it saw last.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vidgo_stems.devstack.local import wait_for


def wait_until(
    check: Callable[[], Any],
    *,
    what: str,
    timeout_s: float = 10.0,
    interval_s: float = 0.05,
    seen: Callable[[], Any] | None = None,
) -> Any:
    """Call ``check`` until it returns something truthy, and return that. At the deadline raise
    TimeoutError naming ``what`` and what was seen last: ``seen()`` when given, else the last
    value ``check`` returned."""
    last: list[Any] = []

    def probe() -> Any:
        value = check()
        last[:] = [value]
        return value

    try:
        return wait_for(probe, timeout_s=timeout_s, interval_s=interval_s, what=what)
    except TimeoutError as exc:
        saw = seen() if seen is not None else (last[0] if last else "nothing")
        raise TimeoutError(f"{exc}; last saw {saw!r}") from None
