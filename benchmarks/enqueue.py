"""Batch enqueue rate: a 100,000-row catalog checked and fed into the ledger and the queue
(no workers run, so nothing is consumed), beside a bare ``send_task`` of the same number of
messages to the same Redis.

    ./scripts/bench enqueue [ROWS]
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.harness import Bench, table
from vidgo_stems.emulator import EmulatorConfig


def write_catalog(path: Path, rows: int) -> None:
    with path.open("w") as out:
        out.write("audio_url,id,title,output_type,label\n")
        for i in range(rows):
            out.write(
                f"https://cdn.example.com/catalog/{i}.mp3,row-{i},Track {i},vocals,L{i % 50}\n"
            )


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with (
        tempfile.TemporaryDirectory(prefix="vidgo-bench-") as folder,
        Bench(Path(folder), EmulatorConfig()) as bench,
    ):
        from vidgo_stems.batch.catalog import check_catalog
        from vidgo_stems.batch.runner import BatchOptions, BatchRunner
        from vidgo_stems.celery_app import app

        catalog = Path(folder) / "catalog.csv"
        write_catalog(catalog, rows)

        started = time.perf_counter()
        for i in range(rows):
            app.send_task("bench.nothing", kwargs={"i": i}, queue="bench-bare")
        bare_rate = rows / (time.perf_counter() - started)
        bench.redis.delete("bench-bare")
        memory_before = bench.redis_used_memory()

        started = time.perf_counter()
        check = check_catalog(catalog)
        check_rate = rows / (time.perf_counter() - started)

        stop = threading.Event()
        fed_at: list[float] = []

        def watch(progress) -> None:  # type: ignore[no-untyped-def]
            if progress.fed >= check.jobs and not fed_at:
                fed_at.append(time.perf_counter())
                stop.set()

        runner = BatchRunner(
            catalog,
            Path(folder) / "manifest.jsonl",
            bench.producer,
            BatchOptions(window=rows),
            check=check,
            on_progress=watch,
            stop=stop,
        )
        started = time.perf_counter()
        runner.run()
        feed_rate = rows / ((fed_at[0] if fed_at else time.perf_counter()) - started)
        queued = bench.redis.llen(bench.env["VIDGO_STEMS_QUEUE_NAME"])
        per_job = (bench.redis_used_memory() - memory_before) / rows
    print(f"batch enqueue: {rows} rows, one Redis, no workers ({queued} submit messages queued)")
    print(
        table(
            [
                ("run", "rows/s", "x bare send_task"),
                ("bare send_task, one message per row", f"{bare_rate:.0f}", "1.00"),
                (
                    "catalog check (read, validate, fingerprint)",
                    f"{check_rate:.0f}",
                    f"{check_rate / bare_rate:.2f}",
                ),
                (
                    "batch feed (ledger job + message per row)",
                    f"{feed_rate:.0f}",
                    f"{feed_rate / bare_rate:.2f}",
                ),
            ]
        )
    )
    print(
        f"Redis memory per queued job (record, history, indexes, submit message): "
        f"{per_job / 1024:.2f} KB; aim: >= 5,000 rows/s"
    )


if __name__ == "__main__":
    main()
