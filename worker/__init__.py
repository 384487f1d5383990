"""vidgo-stems: turn audio URLs into verified stems through Vidgo, on Celery and Redis.

This is the API a web backend uses; everything under it (``vidgo_stems.pipeline``,
``vidgo_stems.web``...) is internal and may change between versions::

    from vidgo_stems import enqueue, get_job, verify_webhook

    job = enqueue("https://cdn.example.com/song.mp3", webhook_url="https://app.example.com/hook")
    view = get_job(job.job_id, subscription_id=job.subscription_id)

It needs only ``REDIS_URL`` (and, for file links, the gateway's public URL and link secret);
never the Vidgo key. Names are imported on first use, so ``import vidgo_stems`` is cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from vidgo_stems.errors import (
        ConfigError,
        InvalidRequest,
        JobCancelled,
        JobConflict,
        JobFailed,
        VidgoStemsError,
    )
    from vidgo_stems.producer import (
        Enqueued,
        cancel,
        enqueue,
        get_job,
        list_jobs,
        retry,
    )
    from vidgo_stems.views import JobError, JobPage, JobSummary, JobView, StemLink, WebhookView
    from vidgo_stems.webhooks import WebhookVerificationError
    from vidgo_stems.webhooks import verify as verify_webhook

#: Public name -> (module, attribute).
_PUBLIC = {
    "enqueue": ("vidgo_stems.producer", "enqueue"),
    "Enqueued": ("vidgo_stems.producer", "Enqueued"),
    "get_job": ("vidgo_stems.producer", "get_job"),
    "list_jobs": ("vidgo_stems.producer", "list_jobs"),
    "retry": ("vidgo_stems.producer", "retry"),
    "cancel": ("vidgo_stems.producer", "cancel"),
    "verify_webhook": ("vidgo_stems.webhooks", "verify"),
    "WebhookVerificationError": ("vidgo_stems.webhooks", "WebhookVerificationError"),
    "JobView": ("vidgo_stems.views", "JobView"),
    "JobPage": ("vidgo_stems.views", "JobPage"),
    "JobSummary": ("vidgo_stems.views", "JobSummary"),
    "JobError": ("vidgo_stems.views", "JobError"),
    "StemLink": ("vidgo_stems.views", "StemLink"),
    "WebhookView": ("vidgo_stems.views", "WebhookView"),
    "VidgoStemsError": ("vidgo_stems.errors", "VidgoStemsError"),
    "ConfigError": ("vidgo_stems.errors", "ConfigError"),
    "InvalidRequest": ("vidgo_stems.errors", "InvalidRequest"),
    "JobConflict": ("vidgo_stems.errors", "JobConflict"),
    "JobFailed": ("vidgo_stems.errors", "JobFailed"),
    "JobCancelled": ("vidgo_stems.errors", "JobCancelled"),
}

__all__ = [
    "ConfigError",
    "Enqueued",
    "InvalidRequest",
    "JobCancelled",
    "JobConflict",
    "JobError",
    "JobFailed",
    "JobPage",
    "JobSummary",
    "JobView",
    "StemLink",
    "VidgoStemsError",
    "WebhookVerificationError",
    "WebhookView",
    "cancel",
    "enqueue",
    "get_job",
    "list_jobs",
    "retry",
    "verify_webhook",
]


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _PUBLIC[name]
    except KeyError:
        raise AttributeError(f"module 'vidgo_stems' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
