"""One job as the console shows it: the caller's view, every subscription, each stem's figures.

The job view is the one the jobs API returns (:class:`vidgo_stems.views.JobView`: history, attempts,
Vidgo task ids, the manifest, fresh signed stem links); the console adds every subscription
with its webhook deliveries and, per stem, what the manifest measured beside its player.
Waveforms come from the peaks file stored next to each stem, read through the storage layer.
"""

from __future__ import annotations

import json
from typing import Any

from vidgo_stems.celery_app import Producer
from vidgo_stems.models import validate_job_id
from vidgo_stems.pipeline.outbox import Outbox
from vidgo_stems.views import JobView, subscription_view

#: Points of a waveform sent to the page at most (min/max pairs); more are merged.
MAX_POINTS = 4000
_FIGURES = ("loudness_lufs", "true_peak_dbtp", "offset_vs_source_s", "duration_s", "format")


def job_page(producer: Producer, job_id: str) -> dict[str, Any] | None:
    """Everything the job page shows, JSON-ready; None when the job is unknown."""
    job = producer.ledger.get(validate_job_id(job_id))
    if job is None:
        return None
    view = JobView.build(producer, job).model_dump(mode="json")
    outbox = Outbox(producer.ledger)
    view["subscriptions"] = [
        subscription_view(outbox, job.job_id, sub).model_dump(mode="json")
        for sub in outbox.subscriptions(job.job_id).values()
    ]
    manifest = view.get("manifest") or {}
    problems = manifest.get("problems") or {}
    measured = manifest.get("stems") or {}
    for name, stem in view["stems"].items():
        entry = measured.get(name) or {}
        stem["figures"] = {k: entry.get(k) for k in _FIGURES if k in entry}
        stem["problems"] = list(entry.get("problems") or []) + list(problems.get(name) or [])
        stem["has_peaks"] = bool(job.outputs.get(name) and job.outputs[name].peaks_json_key)
    view["vidgo_task_ids"] = list(job.vidgo_task_ids)
    view["live_task_ids"] = list(job.live_task_ids)
    view["resubmits"] = job.resubmits
    view["ambiguous_submits"] = job.ambiguous_submits
    return view


def peaks(producer: Producer, job_id: str, stem: str) -> dict[str, Any] | None:
    """A stem's waveform (min/max pairs, 8-bit), at most MAX_POINTS pairs; None without one."""
    job = producer.ledger.get(validate_job_id(job_id))
    output = job.outputs.get(stem) if job else None
    if output is None or not output.peaks_json_key:
        return None
    raw = producer.storage.read_bytes(output.peaks_json_key)
    if raw is None:
        return None
    document = json.loads(raw)
    pairs = [document["data"][i : i + 2] for i in range(0, len(document["data"]) - 1, 2)]
    step = max(1, -(-len(pairs) // MAX_POINTS))
    merged = [
        [min(p[0] for p in pairs[i : i + step]), max(p[1] for p in pairs[i : i + step])]
        for i in range(0, len(pairs), step)
    ]
    seconds = len(pairs) * document["samples_per_pixel"] / document["sample_rate"]
    return {"bits": document.get("bits", 8), "pairs": merged, "duration_s": round(seconds, 3)}
