"""The live view of a batch run: a progress bar on a terminal, plain lines anywhere else."""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from vidgo_stems.batch.results import FINAL_STATES
from vidgo_stems.batch.runner import Progress as BatchProgress
from vidgo_stems.pipeline.states import JobState

_ORDER = [s.value for s in JobState if not s.is_terminal] + list(FINAL_STATES)


def describe_states(counts: dict[str, int]) -> str:
    """``DONE 10 · FAILED 1 · RUNNING 4``: non-zero counts, pipeline order."""
    return " · ".join(f"{s} {counts[s]}" for s in _ORDER if counts.get(s))


def describe_eta(seconds: float | None) -> str:
    if seconds is None:
        return "ETA -"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"ETA {hours}h{minutes:02d}m" if hours else f"ETA {minutes}m{secs:02d}s"


def summary_line(p: BatchProgress) -> str:
    """One plain line of progress: rows ended so far, this run's rate and ETA, failures, states."""
    return (
        f"{p.rows_final}/{p.rows} rows ended · {p.rate:.1f} rows/s · {describe_eta(p.eta_s)} · "
        f"failures {p.failures} · {describe_states(dict(p.by_state))}"
    )


class LiveView:
    """Call :meth:`update` with each snapshot; use as a context manager."""

    def __init__(self, console: Console, rows: int, *, plain_every_s: float = 5.0) -> None:
        self.console = console
        self.plain = not console.is_terminal
        self.plain_every_s = plain_every_s
        self._last_plain = 0.0
        self._bar = Progress(
            TextColumn("[bold]batch"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} · {task.fields[eta]} · failures {task.fields[fails]}"),
            TextColumn("{task.fields[states]}"),
            console=console,
            transient=False,
            disable=self.plain,
        )
        self._task = self._bar.add_task("batch", total=rows, rate="", eta="", fails=0, states="")

    def __enter__(self) -> LiveView:
        self._bar.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._bar.stop()

    def update(self, p: BatchProgress) -> None:
        if self.plain:
            now = time.monotonic()
            if now - self._last_plain >= self.plain_every_s or p.rows_final >= p.rows:
                self._last_plain = now
                self.console.print(summary_line(p), highlight=False, soft_wrap=True)
            return
        self._bar.update(
            self._task,
            completed=p.rows_final,
            rate=f"{p.rate:.1f} rows/s",
            eta=describe_eta(p.eta_s),
            fails=p.failures,
            states=describe_states(dict(p.by_state)),
        )
