"""Settings of the Vidgo emulator: timeline, callbacks, storage, credits and injected faults.

Set at start (CLI flags) and changed at run time through ``POST /_emulator/config`` with a partial
JSON object; faults draw from one RNG seeded by ``seed``, so a run is reproducible.
"""

from __future__ import annotations

import random
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class FaultConfig(BaseModel):
    """Probabilities (0-1) of faults, and their parameters. Rates are drawn per request or per
    task from the emulator's seeded RNG."""

    model_config = ConfigDict(extra="forbid")

    # API answers refused before any processing: 5xx (status drawn from status_5xx) and 429.
    rate_5xx: float = Field(default=0.0, ge=0, le=1)
    status_5xx: list[int] = Field(default_factory=lambda: [500, 502, 503])
    rate_429: float = Field(default=0.0, ge=0, le=1)
    retry_after_s: float | None = 1.0
    # API answers that go wrong *after* the request was processed (a submit is then billed):
    # held back for slow_s seconds (past the client's timeout), or cut off mid-body.
    rate_slow: float = Field(default=0.0, ge=0, le=1)
    slow_s: float = Field(default=3.0, ge=0)
    rate_cut: float = Field(default=0.0, ge=0, le=1)
    # Endpoints the API faults apply to: "submit", "detail", "status", "balance".
    endpoints: list[str] = Field(default_factory=lambda: ["submit", "detail", "status", "balance"])
    # Fraction of tasks that end "failed" with a transient message, or with a message about the
    # input (permanent), and of tasks that never finish.
    task_fail_rate: float = Field(default=0.0, ge=0, le=1)
    task_fail_message: str = "Audio separation failed, please try again"
    task_reject_rate: float = Field(default=0.0, ge=0, le=1)
    task_reject_message: str = "The audio violates our content policy"
    never_finish_rate: float = Field(default=0.0, ge=0, le=1)
    # Stem downloads cut off mid-body, and stem URLs that expire (the task then lists new ones).
    download_cut_rate: float = Field(default=0.0, ge=0, le=1)
    download_expire_rate: float = Field(default=0.0, ge=0, le=1)
    # Extra copies of each callback, and extra delay before the first.
    callback_duplicates: int = Field(default=0, ge=0)
    callback_delay_s: float = Field(default=0.0, ge=0)
    # Fraction of callbacks never sent at all (Vidgo gave up, or never tried).
    callback_drop_rate: float = Field(default=0.0, ge=0, le=1)
    # Fraction of finished tasks whose vocal_removal is not valid JSON, or whose files are empty.
    rate_malformed_stems: float = Field(default=0.0, ge=0, le=1)
    rate_empty_files: float = Field(default=0.0, ge=0, le=1)
    # Stems a split comes back without: served as silence of the right length, so the stems
    # no longer sum to the mix.
    lost_stems: list[str] = Field(default_factory=list)
    # Query Music Detail answers that break the contract the way a hostile Vidgo could, for
    # every task submitted while set: nested 100,000 deep, a 5,000-digit progress, a
    # 5,000-digit number inside vocal_removal (once finished), a lone surrogate (the \udfff
    # JSON escape) as the status.
    hostile_detail: Literal["deep", "huge_progress", "huge_in_stems", "surrogate_status"] | None = (
        None
    )
    # Stem URLs end in this suffix whatever format their bytes are (a .wav URL serving MP3).
    stem_url_suffix: Literal["mp3", "wav", "flac"] | None = None


class EmulatorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # None accepts any non-empty Bearer token; a string must match exactly.
    api_key: str | None = None
    # Where stem URLs point; None derives it from the request's own base URL.
    public_url: str | None = None
    queue_s: float = Field(default=2.0, ge=0)
    run_s: float = Field(default=5.0, ge=0)
    # Callback body shape: flat (newest docs) or wrapped in {code, data}.
    callback_shape: Literal["flat", "wrapped"] = "flat"
    callback_timeout_s: float = 10.0
    # Retry schedule of callbacks: "old" = 3 tries after 1/2/4 s, "new" = up to 5, backoff.
    callback_retries: Literal["old", "new", "none"] = "old"
    # Require callback_url on submit and enforce the older URL rules (HTTPS, no private IPs).
    strict_callback_url: bool = False
    # Pause between 16 KiB chunks of a stem download (0: send at once), to make downloads slow.
    storage_chunk_delay_s: float = Field(default=0.0, ge=0)
    # Seconds a stem URL stays valid after the task finished (Vidgo: 24 h).
    stem_ttl_s: float = 24 * 3600.0
    # Pad stem keys with stray spaces, as Vidgo's internal draft shows.
    messy_stem_keys: bool = False
    # Answer 409 when the same audio_url is submitted again.
    conflict_on_duplicate_audio: bool = False
    credits: int = 100_000
    price_per_task: int = 2
    # Stems as MP3 (Vidgo's own format, with encoder delay and padding), WAV or FLAC.
    stem_format: Literal["mp3", "wav", "flac"] = "mp3"
    sample_rate: int = 44_100
    synth_duration_s: float = 4.0
    max_input_s: float = 600.0
    fetch_timeout_s: float = 10.0
    seed: int = 0
    # Rendered stems kept for tasks of the same source and parameters (emulator/cache.py):
    # at most this many bytes, least recently used evicted first; 0 turns the cache off.
    stem_cache_bytes: int = Field(default=512 * 1024 * 1024, ge=0)
    # A folder to keep them in (shared by emulators on this machine, kept across runs);
    # None keeps them in this process's memory.
    stem_cache_dir: str | None = None
    faults: FaultConfig = Field(default_factory=FaultConfig)

    def rng(self) -> random.Random:
        return random.Random(self.seed)
