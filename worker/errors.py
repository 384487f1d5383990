"""One error tree for vidgo-stems; the base task retries or fails a job by these types alone.

::

    VidgoStemsError                       code, message, status_code, job_id
    ├── ConfigError                       a setting is missing or malformed at start-up
    ├── InvalidRequest                    a job request is refused at enqueue
    ├── JobConflict                       a request the job's state does not allow (enqueue a
    │                                     FAILED job, cancel one others still wait for)
    ├── CatalogError                      a catalog cannot be read at all
    ├── BatchError                        a batch cannot run as asked
    ├── RetryableError                    try the same step again later, with backoff
    │   ├── VidgoUnavailable              Vidgo answered 408 or 5xx
    │   ├── VidgoRateLimited              Vidgo answered 429 (retry_after_s when given)
    │   ├── VidgoTransportError           no usable answer: connect, timeout, reset, cut body
    │   ├── VidgoTaskNotFound             404 for a task id we hold (may lag right after submit)
    │   ├── StemDownloadError             a stem transfer broke or came back short
    │   ├── StemUrlsRefreshed             expired stem URLs were replaced: download again
    │   ├── StemMissing                   a stored stem is not where the ledger says it is
    │   └── StorageUnavailable            the storage layer did not answer
    └── PermanentError                    retrying the same step cannot help; the job fails
        ├── InvalidTaskInput              a vidgo.enqueue by name carries an invalid request
        ├── VidgoBadRequest               400: the request was refused as invalid
        ├── VidgoAuthError                401: the API key is missing or wrong
        ├── VidgoCreditsError             402: not enough credits
        ├── VidgoForbidden                403: the key may not do this
        ├── VidgoConflict                 409: Vidgo already separated this audio
        ├── VidgoClientError              any other 4xx
        ├── VidgoProtocolError            an answer that does not match the contract
        ├── VidgoOutputError              a finished task whose stems are missing or malformed
        ├── VidgoTaskFailed               Vidgo reports the task failed
        ├── SubmitAmbiguous               a submit may have been billed but its answer was lost
        ├── TaskStalled                   a Vidgo task did not finish within the deadline
        ├── StemHostNotAllowed            a stem URL points at a host outside the allow list
        ├── StemUrlExpired                storage refused a stem URL (403/404/410)
        ├── StemCorrupt                   a stored stem no longer matches its checksum
        ├── StemUndecodable               a stem cannot be decoded as audio
        ├── StemInvalid                   stems failed validation (with fail_on_invalid_stems)
        └── StorageError                  stems cannot be written (disk full, no permission)

Outside the job flow, each also a ValueError (for callers that catch that)::

    Exception
    └── JobFailed                         AsyncResult(job_id).get() of a job that ended FAILED
        └── JobCancelled                  ... or CANCELLED (code and message as on the job)

    ValueError
    ├── IllegalTransition                 code asked for a move the state machine does not have
    ├── UrlRefused                        a signed file link is malformed, tampered or foreign
    │   └── UrlExpired                    a genuine file link whose time is up
    └── WebhookVerificationError          a received webhook is not authentic, or too old

Every class has a stable ``code`` string that lands in the ledger, the manifest and the API.
"""

from __future__ import annotations

#: Input echoed in an error message is cut to this many characters: a refusal names what was
#: wrong without repeating a 70,000-character value back.
ECHO_CHARS = 80


def shown(value: object, limit: int = ECHO_CHARS) -> str:
    """``repr(value)``, cut to ``limit`` characters with a note of the full length."""
    text = repr(value)
    if len(text) <= limit:
        return text
    length = len(value) if isinstance(value, str | bytes) else len(text)
    return f"{text[:limit]}... ({length} characters)"


class VidgoStemsError(Exception):
    """Base of every error this project raises on purpose."""

    code = "error"

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        job_id: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.job_id = job_id
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[object, ...]:
        # Celery pickles nothing here (JSON), but keep errors copyable across processes.
        return (_rebuild, (type(self), self.message, self.status_code, self.job_id, self.code))


def _rebuild(
    cls: type[VidgoStemsError], message: str, status_code: int | None, job_id: str | None, code: str
) -> VidgoStemsError:
    return cls(message, status_code=status_code, job_id=job_id, code=code)


class ConfigError(VidgoStemsError):
    """Raised when a setting is missing or malformed at start-up."""

    code = "config_error"


class InvalidRequest(VidgoStemsError):
    """Raised when a job request is refused at enqueue; the message names the allowed values."""

    code = "invalid_request"


class JobConflict(VidgoStemsError):
    """Raised when a request conflicts with the job's state; the message says what to do."""

    code = "conflict"


class CatalogError(VidgoStemsError):
    """Raised when a catalog cannot be read at all (missing, binary, no header, no audio_url)."""

    code = "bad_catalog"


class BatchError(VidgoStemsError):
    """Raised when a batch cannot run as asked (bad rows with --bad-rows stop, a foreign
    manifest); the message says what to do."""

    code = "batch_refused"


class RetryableError(VidgoStemsError):
    """Raised when the same step may succeed if tried again later."""

    code = "retryable"
    #: Whether the request may have reached Vidgo and been acted on (matters for submit only).
    maybe_processed = False
    #: Seconds the other side asked us to wait (Retry-After), when it said.
    retry_after_s: float | None = None


class VidgoUnavailable(RetryableError):
    """Raised when Vidgo answers 408 or 5xx."""

    code = "vidgo_unavailable"

    def __init__(self, message: str, *, status_code: int | None = None, **kw: object) -> None:
        super().__init__(message, status_code=status_code, **kw)  # type: ignore[arg-type]
        # A 500 or 502 may come after the work was done; 408, 503 and 504 say it was not.
        self.maybe_processed = status_code in (500, 502)


class VidgoRateLimited(RetryableError):
    """Raised when Vidgo answers 429; ``retry_after_s`` holds its Retry-After when given."""

    code = "vidgo_rate_limited"

    def __init__(self, message: str, *, retry_after_s: float | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after_s = retry_after_s


class VidgoTransportError(RetryableError):
    """Raised when no usable HTTP answer came back (connect error, timeout, reset, cut body)."""

    code = "vidgo_transport_error"

    def __init__(self, message: str, *, maybe_processed: bool, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.maybe_processed = maybe_processed


class VidgoTaskNotFound(RetryableError):
    """Raised when Vidgo answers 404 for a task id we hold; it can lag right after submit."""

    code = "vidgo_task_not_found"


class StemDownloadError(RetryableError):
    """Raised when a stem transfer broke off or delivered fewer bytes than announced."""

    code = "stem_download_error"


class StemUrlsRefreshed(RetryableError):
    """Raised after expired stem URLs were replaced by fresh ones: try the download again."""

    code = "stem_urls_refreshed"
    retry_after_s = 0.5


class StemMissing(RetryableError):
    """Raised when a stored stem is missing or changed: its step downloads it again."""

    code = "stem_missing"


class StorageUnavailable(RetryableError):
    """Raised when the storage layer (object store, shared folder) did not answer."""

    code = "storage_unavailable"


class PermanentError(VidgoStemsError):
    """Raised when trying the same step again cannot help; the job ends FAILED."""

    code = "permanent"


class InvalidTaskInput(PermanentError):
    """Raised when a ``vidgo.enqueue`` (or ``vidgo.submit``) sent by name carries an invalid
    request; no job is made."""

    code = "invalid_request"


class VidgoBadRequest(PermanentError):
    """Raised when Vidgo answers 400: the request is invalid as sent."""

    code = "vidgo_bad_request"


class VidgoAuthError(PermanentError):
    """Raised when Vidgo answers 401: the API key is missing or wrong."""

    code = "vidgo_auth_failed"


class VidgoCreditsError(PermanentError):
    """Raised when Vidgo answers 402: the account has too few credits."""

    code = "vidgo_insufficient_credits"


class VidgoForbidden(PermanentError):
    """Raised when Vidgo answers 403: the key may not do this (or the task is another user's)."""

    code = "vidgo_forbidden"


class VidgoConflict(PermanentError):
    """Raised when Vidgo answers 409: it already separated this audio."""

    code = "vidgo_conflict"


class VidgoClientError(PermanentError):
    """Raised for any other 4xx answer from Vidgo."""

    code = "vidgo_client_error"


class VidgoProtocolError(PermanentError):
    """Raised when an answer from Vidgo does not match its documented shape."""

    code = "vidgo_malformed_response"


class VidgoOutputError(PermanentError):
    """Raised when a finished task's stems are missing or ``vocal_removal`` is malformed."""

    code = "vidgo_malformed_stems"


class VidgoTaskFailed(PermanentError):
    """Raised when Vidgo reports the task as failed; the message carries its error_message."""

    code = "vidgo_task_failed"


class SubmitAmbiguous(PermanentError):
    """Raised when a submit may have created (and billed) a task but its answer was lost."""

    code = "submit_ambiguous"


class TaskStalled(PermanentError):
    """Raised when a Vidgo task stays unfinished past ``stall_timeout_s`` at the resubmit bound."""

    code = "vidgo_task_stalled"


class StemHostNotAllowed(PermanentError):
    """Raised when a stem URL points at a host outside ``allowed_stem_hosts``."""

    code = "stem_host_not_allowed"


class StemUrlExpired(PermanentError):
    """Raised when storage refuses a stem URL with 403, 404 or 410 (URLs live 24 h)."""

    code = "stem_url_expired"


class StorageError(PermanentError):
    """Raised when stems cannot be written: disk full, no permission, not a directory."""

    code = "storage_error"


class StemCorrupt(PermanentError):
    """Raised when a stem no longer matches the checksum taken when it was downloaded."""

    code = "stem_corrupt"


class StemUndecodable(PermanentError):
    """Raised when a downloaded stem cannot be decoded as audio."""

    code = "stem_undecodable"


class IllegalTransition(ValueError):
    """Raised when code asks for a move the state machine does not have (a programming error)."""


class UrlRefused(ValueError):
    """Raised when a file link or key is refused; ``reason`` is short and safe to show or log."""

    code = "url_refused"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UrlExpired(UrlRefused):
    """Raised for a genuine file link whose time is up: the caller asks for a fresh one."""


class WebhookVerificationError(ValueError):
    """Raised by :func:`vidgo_stems.webhooks.verify` when a webhook is not authentic, or too old
    or too new."""


class JobFailed(Exception):
    """Raised by ``AsyncResult(job_id).get()`` for a job that ended FAILED: ``code`` and
    ``message`` are the job's stable error code and message. (Celery rebuilds it from its
    arguments, so they are the only state it has.)"""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


class JobCancelled(JobFailed):
    """Raised by ``AsyncResult(job_id).get()`` for a job that ended CANCELLED."""


class StemInvalid(PermanentError):
    """Raised when stems fail validation against the source and the settings say to fail."""

    code = "stems_invalid"
