"""The emulator's own record decides: nothing lost, nothing paid twice, stems byte-identical."""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict

from tests.manifests import assert_valid_manifest
from tests.support import fetch
from vidgo_stems.pipeline.states import JobState


def audit(stack, views) -> dict[str, int]:
    """Check every job against the emulator's record; returns totals for further assertions.

    Per job: the Vidgo tasks the ledger holds all exist at the emulator for this job's audio;
    paid submissions = 1 + resubmissions recorded (for a finished job), plus at most the
    ambiguous submits the ledger counted; a DONE job's stems on disk are byte-identical to
    what the emulator made for the winning task.
    """
    tasks = stack.emulator.tasks()
    paid = Counter(e["audio_url"] for e in stack.emulator.record("submit") if "task_id" in e)
    task_ids_by_url = defaultdict(set)
    for task_id, task in tasks.items():
        task_ids_by_url[task["audio_url"]].add(task_id)
    totals = Counter()
    for view in views:
        url = view.request["audio_url"]
        recorded = view.vidgo_task_ids
        events = Counter(h["event"] for h in view.history)
        resubmits, ambiguous = events["resubmit"], events["submit_ambiguous"]
        assert len(recorded) == len(set(recorded)), view.job_id
        assert set(recorded) <= task_ids_by_url[url], (view.job_id, recorded)
        assert len(recorded) <= 1 + resubmits, (view.job_id, recorded, resubmits)
        if view.state is JobState.DONE:
            assert len(recorded) == 1 + resubmits, (view.job_id, recorded, resubmits)
            verify_stems(view, tasks[view.vidgo_task_id])
        assert len(recorded) <= paid[url] <= len(recorded) + ambiguous, (
            f"job {view.job_id} ({view.state.value}) paid {paid[url]} time(s), recorded "
            f"{list(recorded)}, {ambiguous} ambiguous; its history: {story(view)}"
        )
        totals.update(
            paid=paid[url],
            resubmits=resubmits,
            ambiguous=ambiguous,
            recovered=events["recovered"],
            refreshed=events["stem_urls_refreshed"],
        )
    return dict(totals)


def story(view) -> list[str]:
    """The job's history in short: each event, with the Vidgo task it names."""
    return [
        h["event"] + (f"({h['vidgo_task_id']})" if h.get("vidgo_task_id") else "")
        for h in view.history
    ]


def verify_stems(view, task) -> None:
    manifest = json.loads(fetch(view.manifest_url))
    assert set(manifest["stems"]) == set(task["sha256"]), view.job_id
    assert_valid_manifest(manifest)
    for stem, entry in manifest["stems"].items():
        delivered = hashlib.sha256(fetch(view.stems[stem].url)).hexdigest()
        assert delivered == entry["sha256"], (view.job_id, stem)  # the delivered file
        assert entry["original"]["sha256"] == task["sha256"][stem], (view.job_id, stem)
