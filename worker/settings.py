"""Every setting of vidgo-stems, read once from the environment by pydantic-settings.

Three variables keep their conventional names (``VIDGO_API_KEY``, ``REDIS_URL``, ``STEMS_DIR``,
plus ``VIDGO_BASE_URL``); every other knob is ``VIDGO_STEMS_<FIELD>``. Tests build
``Settings(...)`` with keyword arguments; processes call the cached :func:`get_settings`.
"""

from __future__ import annotations

import base64
import binascii
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from vidgo_stems.errors import ConfigError, shown
from vidgo_stems.jsonsafe import JsonLimits
from vidgo_stems.models import DeliveryFormat
from vidgo_stems.redisurl import check_redis_url

#: The bitrates of MPEG-1 Layer III (kbps): what ``mp3_bitrate_kbps`` may be.
MP3_BITRATES_KBPS = (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)

DEFAULT_VIDGO_BASE_URL = "https://api.vidgo.ai"


class Settings(BaseSettings):
    """Configuration of the worker, the CLI and the client. Units are in the names."""

    model_config = SettingsConfigDict(
        env_prefix="VIDGO_STEMS_",
        extra="ignore",
        populate_by_name=True,
        frozen=True,
    )

    vidgo_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("VIDGO_API_KEY", "vidgo_api_key")
    )
    vidgo_base_url: str = Field(
        default=DEFAULT_VIDGO_BASE_URL,
        validation_alias=AliasChoices("VIDGO_BASE_URL", "vidgo_base_url"),
    )
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_URL", "redis_url")
    )
    stems_dir: Path = Field(
        default=Path("stems"), validation_alias=AliasChoices("STEMS_DIR", "stems_dir")
    )

    # Where finished stems and manifests are stored: file:///abs/path (one host, or a folder
    # every worker host mounts) or s3://bucket/prefix (AWS_* variables configure the client).
    # Unset: file:// under STEMS_DIR.
    storage_url: str | None = None
    # Local working space for downloads before they are verified and stored (per host).
    # Unset: .scratch under STEMS_DIR.
    scratch_dir: Path | None = None
    # A scratch folder untouched this long is removed (its job was post-processed elsewhere).
    scratch_ttl_s: int = Field(default=6 * 3600, ge=60)
    # Post-processing on its own queue (CPU-heavy: give it its own hosts); unset: the main queue.
    postprocess_queue: str | None = None
    # URLs handed to callers: for file:// storage the gateway serves signed links under this
    # public base URL, signed with file_url_secret (32+ random bytes); S3 links are pre-signed.
    # Links live url_ttl_s seconds and are minted afresh on every read of a job.
    public_base_url: str | None = None
    file_url_secret: SecretStr | None = None
    url_ttl_s: int = Field(default=24 * 3600, ge=60, le=7 * 24 * 3600)
    # The stems as Vidgo served them are linkable as soon as they are stored; once the job is
    # DONE they are removed when the last link that can point at them has expired (url_ttl_s
    # later), or kept for the job's life with keep_originals.
    keep_originals: bool = False
    # Ended jobs older than this lose their stored files and ledger entry in the sweep; unset:
    # kept until `vidgo-stems purge`.
    purge_after_s: int | None = Field(default=None, gt=0)

    # Post-processing. Stems are checked against the source track (fetched once from audio_url,
    # size-capped; a private host only when allowed); a stem failing a check is reported in the
    # manifest, and fails the job only with fail_on_invalid_stems.
    validate_source: bool = True
    max_source_bytes: int = Field(default=1024**3, gt=0)
    allow_private_source_hosts: bool = False
    fail_on_invalid_stems: bool = False
    # Delivery defaults (a request may choose its own format, sample rate and loudness target):
    # original, wav16, wav24, flac, mp3 or opus; the sample rate (unset: the stem's own); MP3
    # bitrate; loudness normalisation to a target LUFS with a true-peak ceiling (off unset).
    delivery_format: DeliveryFormat = DeliveryFormat.ORIGINAL
    delivery_sample_rate: int | None = Field(default=None, ge=8000, le=192_000)
    # Constant bitrate of `mp3` delivery (an MPEG-1 bitrate, MP3_BITRATES_KBPS).
    mp3_bitrate_kbps: int = 256
    # `original` stems are Vidgo's bytes untouched; with this they carry our tags too (and so
    # are no longer byte for byte what Vidgo served).
    tag_originals: bool = False
    normalize_lufs: float | None = Field(default=None, ge=-40, le=-5)
    true_peak_ceiling_dbtp: float = Field(default=-1.0, ge=-20, le=0)
    # Stored stem names: fields {stem}, {title}, {job_id}, {ext}, each sanitised.
    name_template: str = "{stem}.{ext}"
    # Waveform peaks for players: pixels per second of audio.
    peaks_pixels_per_second: int = Field(default=50, ge=1, le=1000)

    # Public base URL under which Vidgo can reach our callback endpoint; None sends no callback
    # URL (polling alone then finds every result).
    public_callback_base_url: str | None = None
    # Hosts stems may be downloaded from; the host of vidgo_base_url is always added.
    allowed_stem_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["storage.vidgo.ai"]
    )

    # Gateway: bearer keys accepted by the jobs API (comma-separated; rotate by listing old and
    # new), and the largest request body it reads.
    gateway_api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    gateway_max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # A request body must arrive within this many seconds of the request (a slow or stalled
    # sender would hold a connection otherwise).
    gateway_body_timeout_s: float = Field(default=10.0, gt=0)
    # A connection's request headers must be complete this many seconds after it opened (or
    # after the previous answer on it); a client trickling them is cut.
    gateway_header_timeout_s: float = Field(default=10.0, gt=0)
    # Web origins allowed to call the API and fetch stem links from a browser (CORS), comma-
    # separated (https://app.example.com), or * for any; none: browsers get no CORS answer.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # JSON from outside (gateway bodies, callbacks, catalog rows): nesting and integer limits.
    max_json_depth: int = Field(default=32, ge=2, le=1000)
    max_json_int_digits: int = Field(default=40, ge=1, le=4300)
    # Callers subscribed to one job at most (each gets its own webhook).
    max_subscribers_per_job: int = Field(default=100, ge=1, le=10_000)
    # A Vidgo callback wakes the job's poll at most once per this many seconds (duplicates).
    callback_debounce_s: float = Field(default=1.0, ge=0)
    # The operator console (/console): keys that may look but change nothing (the jobs API
    # keys above may act), how long a signed-in session lasts, and whether its cookie is marked
    # Secure always (else only when the request came over https, e.g. behind a TLS proxy).
    console_readonly_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    console_session_ttl_s: int = Field(default=8 * 3600, ge=60, le=7 * 24 * 3600)
    console_secure_cookie: bool = False

    # Completion webhooks: a default URL for jobs enqueued without one, the signing secret
    # (Standard Webhooks "whsec_<base64>"; `vidgo-stems webhook-secret` makes one), and delivery.
    default_webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_max_attempts: int = Field(default=8, ge=1)
    webhook_backoff_base_s: float = Field(default=5.0, gt=0)
    webhook_backoff_max_s: float = Field(default=3600.0, gt=0)
    # Webhook receivers on loopback or private networks are refused (SSRF) unless this is set.
    allow_private_webhook_hosts: bool = False
    # Link-local addresses (169.254/16, fe80::/10) and cloud metadata endpoints, for webhook
    # receivers and sources alike: never opened by the two settings above, only by this one.
    dangerously_allow_link_local_hosts: bool = False

    # Global limits on Vidgo shared by every worker (Redis token buckets): requests per second
    # and burst, for submits and for queries (detail, status, balance). A 429 halves the rates,
    # down to rate_floor_ratio of these, and they recover fully over rate_recovery_s.
    vidgo_submit_rate_per_s: float = Field(default=2.0, gt=0)
    vidgo_submit_burst: float = Field(default=5.0, ge=1)
    vidgo_query_rate_per_s: float = Field(default=10.0, gt=0)
    vidgo_query_burst: float = Field(default=20.0, ge=1)
    rate_floor_ratio: float = Field(default=0.1, gt=0, le=1)
    rate_recovery_s: float = Field(default=300.0, gt=0)
    # Jobs holding a Vidgo task at once, across all workers; a job over the cap waits QUEUED and
    # tries again after in_flight_wait_s.
    max_in_flight: int = Field(default=500, ge=1)
    in_flight_wait_s: float = Field(default=5.0, gt=0)
    # Batch runs: credits one Vidgo task costs (not published by Vidgo: check your console), and
    # jobs of one batch allowed between enqueue and end at once (its backpressure window).
    credits_per_task: float = Field(default=2.0, ge=0)
    batch_window: int = Field(default=500, ge=1)

    # With Vidgo callbacks on (public_callback_base_url set), a callback wakes the poll as soon
    # as a task ends, so polling is only the safety net: it starts later and settles longer.
    callback_poll_initial_s: float = Field(default=20.0, gt=0)
    callback_poll_max_s: float = Field(default=120.0, gt=0)

    # Poll schedule: first poll after poll_initial_s, then x poll_backoff_factor up to poll_max_s.
    poll_initial_s: float = Field(default=3.0, gt=0)
    poll_max_s: float = Field(default=30.0, gt=0)
    poll_backoff_factor: float = Field(default=1.5, ge=1.0)
    poll_jitter_ratio: float = Field(default=0.2, ge=0.0, lt=1.0)
    # Vidgo asks for 2-5 s between polls; lower it only against the emulator.
    poll_min_interval_s: float = Field(default=2.0, gt=0)
    # A Vidgo task still not_started or running this long after its submit is stalled.
    stall_timeout_s: float = Field(default=1800.0, gt=0)
    # "finished" with no usable stem URL is re-polled this many times before the attempt is dead.
    empty_finished_repolls: int = Field(default=2, ge=0)
    # Vidgo tasks (paid submissions) one job may create: 1 + resubmissions of failed or stalled
    # tasks. Earlier attempts keep being polled; whichever finishes first wins.
    max_vidgo_tasks: int = Field(default=3, ge=1)
    resubmit_backoff_base_s: float = Field(default=30.0, gt=0)
    resubmit_backoff_max_s: float = Field(default=600.0, gt=0)
    # Expired stem URLs (403/404/410) are refreshed from Vidgo this many times per job.
    max_url_refreshes: int = Field(default=2, ge=0)
    # A 402 (no credits) pauses every submit for this long; jobs wait QUEUED, none fail.
    credits_pause_s: float = Field(default=300.0, gt=0)
    # A 429 without Retry-After makes every worker hold off Vidgo for this long.
    rate_limit_cooldown_s: float = Field(default=5.0, gt=0)
    # Recovery sweep: how often it runs, and how late past its due time a job must be before it
    # is re-dispatched from the ledger (its message was lost: Redis restart, killed worker).
    sweep_interval_s: float = Field(default=60.0, gt=0)
    sweep_grace_s: float = Field(default=120.0, ge=0)

    http_connect_timeout_s: float = Field(default=5.0, gt=0)
    http_read_timeout_s: float = Field(default=30.0, gt=0)
    http_write_timeout_s: float = Field(default=30.0, gt=0)
    http_pool_timeout_s: float = Field(default=10.0, gt=0)
    download_read_timeout_s: float = Field(default=60.0, gt=0)
    max_stem_bytes: int = Field(default=2 * 1024**3, gt=0)

    # A submit whose answer was lost may have been billed: "fail" stops the job for review,
    # "retry" submits again, at most ambiguous_submit_retries times per job (each may be charged).
    ambiguous_submit_policy: Literal["fail", "retry"] = "fail"
    ambiguous_submit_retries: int = Field(default=1, ge=0)

    # Retries of a stage after a retryable error (transport, 408, 429, 5xx).
    task_max_retries: int = Field(default=8, ge=0)
    retry_backoff_base_s: float = Field(default=2.0, gt=0)
    retry_backoff_max_s: float = Field(default=300.0, gt=0)

    # Celery-on-Redis: every task runtime must stay far below this (waits are in the schedule).
    visibility_timeout_s: int = Field(default=4 * 3600, gt=0)
    task_soft_time_limit_s: int = Field(default=900, gt=0)
    # Hard limit: the child is killed; the sweep waits this long before redoing a working stage.
    task_time_limit_s: int = Field(default=960, gt=0)
    worker_eta_task_limit: int = Field(default=2000, gt=0)
    # The schedule's promoter stops pushing due messages onto a queue holding this many, so
    # due work waits in the schedule (in order) rather than behind a backlog in the queue.
    schedule_queue_depth: int = Field(default=200, gt=0)
    result_expires_s: int = Field(default=7 * 24 * 3600, gt=0)
    job_retention_s: int = Field(default=30 * 24 * 3600, gt=0)
    queue_name: str = "vidgo"
    redis_key_prefix: str = "vidgo-stems"

    # Operations. Each worker host serves Prometheus metrics on this port (0: off); the
    # gateway serves its own at /metrics. Logs are plain text or one JSON object per line.
    metrics_port: int = Field(default=9808, ge=0, le=65535)
    metrics_addr: str = "0.0.0.0"
    log_format: Literal["plain", "json"] = "plain"
    # OpenTelemetry traces of every stage run (needs the "tracing" extra; OTEL_* variables
    # choose the exporter).
    tracing: bool = False
    # Redis high availability: with REDIS_URL=sentinel://..., the service name the sentinels
    # monitor, and their own password if they ask for one (see vidgo_stems.redisconn).
    redis_sentinel_master: str | None = None
    redis_sentinel_password: SecretStr | None = None
    # Every Redis command gives up after this long without an answer, and a failed one is
    # retried this many times with backoff (about 15 s in all: long enough for a failover).
    redis_socket_timeout_s: float = Field(default=5.0, gt=0)
    redis_retries: int = Field(default=12, ge=0)
    # Writes a caller or Vidgo's bill depends on (a new job, a paid Vidgo task) wait until this
    # many replicas have them (Redis WAIT), so a failover cannot lose them, and no submit is
    # sent unless they confirm the move before it in time; 0: do not wait. The timeout must
    # be under half the task soft time limit.
    redis_durable_replicas: int = Field(default=0, ge=0)
    redis_durable_timeout_s: float = Field(default=30.0, gt=0)
    # One worker reads Vidgo's credit balance this often (0: never) for metrics and alerts.
    balance_check_s: int = Field(default=300, ge=0)
    # The worker touches this file every few seconds while it is up and connected
    # (`vidgo-stems healthcheck` reads it: liveness probes, compose and image healthchecks).
    heartbeat_file: Path | None = None

    @field_validator(
        "vidgo_base_url", "public_callback_base_url", "default_webhook_url", "public_base_url"
    )
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        # Never echo the value: a URL may carry a password (user:secret@host).
        parts = urlsplit(value)
        if parts.scheme.lower() not in ("http", "https"):
            raise ValueError("must be an http(s) URL with a host, e.g. https://host.example.com")
        try:
            hostname, _ = parts.hostname, parts.port
        except ValueError:
            raise ValueError("has a port that is not a number from 0 to 65535") from None
        if not hostname:
            raise ValueError("must be an http(s) URL with a host, got no host")
        return value.rstrip("/")

    @field_validator("stems_dir", "scratch_dir", mode="before")
    @classmethod
    def _no_empty_folder(cls, value: object) -> object:
        # An empty value would be Path(""), the current folder: never store stems by accident.
        if isinstance(value, str) and not value.strip():
            raise ValueError("is empty: name a folder (e.g. /var/lib/vidgo-stems), or unset it")
        return value

    @field_validator(
        "allowed_stem_hosts",
        "gateway_api_keys",
        "console_readonly_keys",
        "cors_origins",
        mode="before",
    )
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str) and not value.lstrip().startswith("["):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("allowed_stem_hosts")
    @classmethod
    def _lower_hosts(cls, value: list[str]) -> list[str]:
        return [host.lower() for host in value]

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            parts = urlsplit(origin)
            plain = parts.scheme in ("http", "https") and parts.netloc and not parts.path.strip("/")
            if origin != "*" and not (plain and not parts.query and not parts.fragment):
                raise ValueError(
                    f"{shown(origin, 60)} is not an origin: write scheme://host[:port] without "
                    "a path (https://app.example.com), comma-separated, or * for any"
                )
        return [o.rstrip("/") for o in value]

    @field_validator("gateway_api_keys", "console_readonly_keys")
    @classmethod
    def _no_empty_keys(cls, value: list[SecretStr]) -> list[SecretStr]:
        # An empty key would match a request without Authorization: never accept one.
        return [key for key in value if key.get_secret_value().strip()]

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        check_redis_url(value)  # raises ValueError saying what to write (never the URL)
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _check_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            secret_bytes(value)  # raises ValueError with what is wrong (never the secret)
        return value

    def require_webhook_secret(self) -> SecretStr:
        """Return the webhook signing secret or raise a ConfigError that says how to set it."""
        if self.webhook_secret is None:
            raise ConfigError(
                "VIDGO_STEMS_WEBHOOK_SECRET is not set: completion webhooks are signed with it. "
                "Make one with `vidgo-stems webhook-secret` and give it to workers and receivers"
            )
        return self.webhook_secret

    @field_validator("mp3_bitrate_kbps")
    @classmethod
    def _check_mp3_bitrate(cls, value: int) -> int:
        if value not in MP3_BITRATES_KBPS:
            known = ", ".join(map(str, MP3_BITRATES_KBPS))
            raise ValueError(f"is a constant MP3 bitrate, one of {known} (kbps), not {value}")
        return value

    @field_validator("name_template")
    @classmethod
    def _check_name_template(cls, value: str) -> str:
        fields = set(re.findall(r"{([^{}]*)}", value))
        unknown = fields - {"stem", "title", "job_id", "ext"}
        if unknown:
            raise ValueError(
                f"knows {{stem}}, {{title}}, {{job_id}} and {{ext}}, not {{{sorted(unknown)[0]}}}"
            )
        if "stem" not in fields:
            raise ValueError("must contain {stem}, or the stems of a job would share one name")
        return value

    @field_validator("file_url_secret")
    @classmethod
    def _check_file_url_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < 32:
            raise ValueError("must be at least 32 characters: make one with `openssl rand -hex 32`")
        return value

    @model_validator(mode="after")
    def _links_never_degrade(self) -> Settings:
        # With a public base URL, callers expect signed gateway links to stems on file://
        # storage; without the secret a process would hand them local file paths instead.
        local = self.storage_location.startswith("file:")
        if local and self.public_base_url and self.file_url_secret is None:
            raise ValueError(
                "VIDGO_STEMS_PUBLIC_BASE_URL is set but VIDGO_STEMS_FILE_URL_SECRET is not: "
                "stem links would be local file paths; give this process the same "
                "VIDGO_STEMS_FILE_URL_SECRET as the gateway (make one with `openssl rand -hex 32`)"
            )
        return self

    @model_validator(mode="after")
    def _durable_writes_fit_in_a_submit(self) -> Settings:
        # A submit may wait for its send and then for its paid record, each up to the durable
        # timeout; a stage stopped by its time limit meanwhile leaves a paid task unrecorded.
        if self.redis_durable_replicas and 2 * self.redis_durable_timeout_s >= (
            self.task_soft_time_limit_s
        ):
            raise ValueError(
                "VIDGO_STEMS_REDIS_DURABLE_TIMEOUT_S must be less than half of "
                "VIDGO_STEMS_TASK_SOFT_TIME_LIMIT_S: a submit waits for its replicas twice, and "
                "a submit stopped by its time limit after paying leaves the task unrecorded; "
                "lower the first or raise the second"
            )
        return self

    @property
    def json_limits(self) -> JsonLimits:
        return JsonLimits(self.max_json_depth, self.max_json_int_digits)

    @property
    def storage_location(self) -> str:
        """The storage URL in effect: VIDGO_STEMS_STORAGE_URL, else file:// under STEMS_DIR."""
        return self.storage_url or self.stems_dir.absolute().as_uri()

    @property
    def scratch_root(self) -> Path:
        """Where downloads are verified before they are stored."""
        return self.scratch_dir or self.stems_dir / ".scratch"

    @property
    def stem_hosts(self) -> frozenset[str]:
        """Hosts stems may come from: the configured list plus the Vidgo base URL's host."""
        return frozenset(host for _, host, _ in self.stem_origins)

    @property
    def stem_origins(self) -> frozenset[tuple[str, str, int]]:
        """(scheme, host, port) stems may come from: each configured entry (a bare host means
        https on 443; ``http://host:port`` names its own) plus the Vidgo base URL's origin."""
        return frozenset(
            origin_of(entry) for entry in [*self.allowed_stem_hosts, self.vidgo_base_url]
        )

    @property
    def poll_schedule(self) -> tuple[float, float]:
        """(first poll after a submit, longest interval between polls) in effect."""
        if self.public_callback_base_url:
            return self.callback_poll_initial_s, self.callback_poll_max_s
        return self.poll_initial_s, self.poll_max_s

    def require_api_key(self) -> SecretStr:
        """Return the Vidgo API key or raise a ConfigError that says how to set it."""
        if self.vidgo_api_key is None or not self.vidgo_api_key.get_secret_value().strip():
            raise ConfigError(
                "VIDGO_API_KEY is not set: export the key from "
                "https://vidgo.ai/apis/dashboard/api-key (or run `vidgo-stems demo`, which "
                "needs no key)"
            )
        return self.vidgo_api_key

    def require_sentinel_master(self) -> str:
        """The Sentinel service name, or a ConfigError that says how to set it."""
        if not self.redis_sentinel_master:
            raise ConfigError(
                "REDIS_URL is a sentinel:// address but VIDGO_STEMS_REDIS_SENTINEL_MASTER is not "
                "set: give it the name the sentinels monitor (`sentinel monitor <name> ...`)"
            )
        return self.redis_sentinel_master

    def require_redis_url(self) -> str:
        """Return the Redis URL or raise a ConfigError that says how to set it."""
        if not self.redis_url:
            raise ConfigError(
                "REDIS_URL is not set: point it at the shared Redis, e.g. "
                "REDIS_URL=redis://redis-host:6379/0 (the demo starts a private one by itself)"
            )
        return self.redis_url


def origin_of(entry: str) -> tuple[str, str, int]:
    """(scheme, host, port) of ``https://host:port``-style text; a bare host is https, 443."""
    parts = urlsplit(entry if "://" in entry else f"https://{entry}")
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return scheme, (parts.hostname or "").lower(), port


def secret_bytes(secret: SecretStr) -> bytes:
    """The key bytes of a Standard Webhooks secret (``whsec_`` + base64, at least 24 bytes)."""
    text = secret.get_secret_value().strip().removeprefix("whsec_")
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            "must be whsec_ followed by base64 (make one with `vidgo-stems webhook-secret`)"
        ) from None
    if len(key) < 24:
        raise ValueError(f"must hold at least 24 random bytes, got {len(key)}")
    return key


def load_settings(**overrides: object) -> Settings:
    """Build Settings from the environment, turning validation errors into a ConfigError."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            (f"{_env_name(err['loc'])}: " if err["loc"] else "")
            + err["msg"].removeprefix("Value error, ")
            for err in exc.errors(include_url=False)
        )
        raise ConfigError(f"invalid configuration: {problems}") from None
    except SettingsError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return load_settings()


_CONVENTIONAL = {
    "vidgo_api_key": "VIDGO_API_KEY",
    "vidgo_base_url": "VIDGO_BASE_URL",
    "redis_url": "REDIS_URL",
    "stems_dir": "STEMS_DIR",
}


def _env_name(loc: tuple[int | str, ...]) -> str:
    field = str(loc[0]) if loc else "?"
    return _CONVENTIONAL.get(
        field.lower(), field if field.isupper() else f"VIDGO_STEMS_{field.upper()}"
    )
