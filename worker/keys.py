"""Every Redis key vidgo-stems writes, named in one place.

All keys share the configured prefix (``VIDGO_STEMS_REDIS_KEY_PREFIX``), so several pipelines
can share one Redis and a test can own a private corner of one. Celery's own keys (queues,
``unacked``, ``celery-task-meta-*``) are named by Celery and kombu, not here.

::

    <p>:job:<id>                    hash: the job record (the ledger)
    <p>:job:<id>:history            list: every move of the job, JSON
    <p>:job:<id>:subs               hash: subscription id -> its webhook URL and metadata
    <p>:job:<id>:hooks              set: the subscriptions that have a webhook
    <p>:job:<id>:webhooks:<sub>     list: one subscription's webhook delivery attempts
    <p>:job:<id>:hook-status        hash: subscription id -> its webhook's status
    <p>:job:<id>:webhook-lock:<sub> string: one delivery of a subscription's webhook at a time
    <p>:job:<id>:callback-debounce  string: repeated Vidgo callbacks within the debounce
    <p>:job:<id>:parts              hash: finished parts of post-processing -> their result
    <p>:jobs:active                 zset: job keys not yet ended, by last update
    <p>:jobs:ended                  zset: job keys that ended, by when (purge reads it)
    <p>:jobs:state:<STATE>          zset: job keys in that state, by creation time (listing)
    <p>:jobs:created                zset: every job key, by creation time (listing)
    <p>:webhooks:due                zset: "<job key>#<subscription>" whose webhook is due
    <p>:vidgo:in-flight             zset: job keys holding a Vidgo task (the in-flight cap)
    <p>:vidgo:rate:<kind>           hash: token bucket for submits or queries
    <p>:vidgo:balance               hash: the credit balance last read, and when
    <p>:vidgo:durations:<model>     hash: how long Vidgo's tasks took, a histogram (pacing)
    <p>:gate:cooldown               string: a shared 429 cool-down, with its reason
    <p>:gate:submit-paused          string: a credits pause, with its reason
    <p>:counters                    hash: global counters
    <p>:workers                     zset: worker heartbeats
    <p>:sweep-lock                  string: one recovery sweep at a time
    <p>:schedule                    zset: job keys (and webhook entries) whose next message
                                    waits, by due time
    <p>:schedule:messages           hash: entry -> "<queue>\n<the Celery message it sends>"
    <p>:schedule:wake               list: wakes the promoter when an earlier entry arrives
    <p>:schedule:lease              string: the one promoter at a time, and who it is
    <p>:storage-id                  string: the identity of the shared storage
    <p>:batch:<id>                  hash: a batch run's record
    <p>:batch:<id>:jobs             zset: the job ids a batch fed, by when
    <p>:batches                     zset: batch ids, by when their record was last saved
    <p>:console:session:<hash>      hash: a console session (who, what it may do, its CSRF token)
    <p>:console:plan:<id>           string: a console action previewed, awaiting confirmation
"""

from __future__ import annotations

from typing import Any


def text(value: Any) -> str:
    """A Redis reply (bytes, or str from a client that decodes) as str."""
    return value.decode() if isinstance(value, bytes) else str(value)


class Keys:
    """Builds the Redis keys under one prefix."""

    def __init__(self, prefix: str = "vidgo-stems") -> None:
        self.prefix = prefix
        self.active = f"{prefix}:jobs:active"
        self.ended = f"{prefix}:jobs:ended"
        self.created = f"{prefix}:jobs:created"
        self.state_index_prefix = f"{prefix}:jobs:state:"
        self.webhooks_due = f"{prefix}:webhooks:due"
        self.in_flight = f"{prefix}:vidgo:in-flight"
        self.balance = f"{prefix}:vidgo:balance"
        self.cooldown = f"{prefix}:gate:cooldown"
        self.submit_pause = f"{prefix}:gate:submit-paused"
        self.counters = f"{prefix}:counters"
        self.workers = f"{prefix}:workers"
        self.sweep_lock = f"{prefix}:sweep-lock"
        self.schedule = f"{prefix}:schedule"
        self.schedule_messages = f"{prefix}:schedule:messages"
        self.schedule_wake = f"{prefix}:schedule:wake"
        self.promoter_lease = f"{prefix}:schedule:lease"
        self.storage_id = f"{prefix}:storage-id"
        self.batches = f"{prefix}:batches"

    def task_durations(self, model: str) -> str:
        return f"{self.prefix}:vidgo:durations:{model}"

    def state_index(self, state: str) -> str:
        return f"{self.state_index_prefix}{state}"

    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def history(self, job_id: str) -> str:
        return f"{self.job(job_id)}:history"

    def parts(self, job_id: str) -> str:
        return f"{self.job(job_id)}:parts"

    def subscriptions(self, job_id: str) -> str:
        return f"{self.job(job_id)}:subs"

    def hooks(self, job_id: str) -> str:
        return f"{self.job(job_id)}:hooks"

    def hook_status(self, job_id: str) -> str:
        return f"{self.job(job_id)}:hook-status"

    def deliveries(self, job_id: str, sub_id: str) -> str:
        return f"{self.job(job_id)}:webhooks:{sub_id}"

    def webhook_lock(self, job_id: str, sub_id: str) -> str:
        return f"{self.job(job_id)}:webhook-lock:{sub_id}"

    def outbox_member(self, job_id: str, sub_id: str) -> str:
        return f"{self.job(job_id)}#{sub_id}"

    def outbox_entry(self, member: Any) -> tuple[str, str]:
        """(job id, subscription id) of a webhooks-due member."""
        key, _, sub_id = text(member).partition("#")
        return self.job_id_of(key), sub_id

    def callback_debounce(self, job_id: str) -> str:
        return f"{self.job(job_id)}:callback-debounce"

    def rate_bucket(self, kind: str) -> str:
        return f"{self.prefix}:vidgo:rate:{kind}"

    def batch(self, batch_id: str) -> str:
        return f"{self.prefix}:batch:{batch_id}"

    def batch_jobs(self, batch_id: str) -> str:
        return f"{self.batch(batch_id)}:jobs"

    def console_session(self, digest: str) -> str:
        return f"{self.prefix}:console:session:{digest}"

    def console_plan(self, plan_id: str) -> str:
        return f"{self.prefix}:console:plan:{plan_id}"

    def job_id_of(self, key: Any) -> str:
        """The job id in a job key (members of the active, due and in-flight sets are keys)."""
        return text(key).removeprefix(self.job(""))
