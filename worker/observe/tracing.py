"""Optional OpenTelemetry tracing of the pipeline's tasks (``pip install 'vidgo-stems[tracing]'``).

Turned on by ``VIDGO_STEMS_TRACING=true``; the exporter is configured the standard way
(``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_SERVICE_NAME``, ...; ``OTEL_TRACES_EXPORTER=console``
prints one JSON span per line instead). OpenTelemetry's Celery instrumentation is set up in
each pool child after the fork (its batch exporter runs a thread, which must not be forked),
with span links instead of parent-child nesting: every stage run starts its own trace, linked
to the message that started it, so a job that polls 40 times is 40 short linked traces rather
than one trace 40 levels deep. Every run span carries the job id (``vidgo.job_id``) and the
stage (``vidgo.stage``), which is what a trace search starts from.
"""

from __future__ import annotations

import logging
from typing import Any

from vidgo_stems.settings import Settings

log = logging.getLogger(__name__)

_provider: Any = None


def init_tracing(settings: Settings) -> bool:
    """Instrument Celery in this process; False when tracing is off or not installed."""
    global _provider
    if not settings.tracing or _provider is not None:
        return False
    try:
        from celery.signals import task_prerun
        from opentelemetry import trace
        from opentelemetry.instrumentation.celery import CeleryInstrumentor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning(
            "VIDGO_STEMS_TRACING is on but OpenTelemetry is not installed: "
            "pip install 'vidgo-stems[tracing]' (tracing stays off)"
        )
        return False
    provider = TracerProvider(resource=Resource.create({"service.name": "vidgo-stems"}))
    provider.add_span_processor(BatchSpanProcessor(_exporter()))
    trace.set_tracer_provider(provider)
    _provider = provider
    CeleryInstrumentor().instrument(tracer_provider=provider, use_span_links=True)
    # Connected after the instrumentation's own prerun handler, so its run span is current.
    task_prerun.connect(_tag_run_span, weak=False)
    log.info("tracing on: %s", type(trace.get_tracer_provider()).__name__)
    return True


def _exporter() -> Any:
    import os
    import sys

    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    if os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "console":
        # The process's real stdout: Celery redirects sys.stdout into its logger.
        return ConsoleSpanExporter(
            out=sys.__stdout__ or sys.stdout,
            formatter=lambda span: span.to_json(indent=None) + "\n",
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def _tag_run_span(task: Any = None, kwargs: dict[str, Any] | None = None, **_: Any) -> None:
    from opentelemetry import trace

    span = trace.get_current_span()
    if not span.is_recording() or task is None:
        return
    job_id = (kwargs or {}).get("job_id")
    if job_id:
        span.set_attribute("vidgo.job_id", str(job_id))
    span.set_attribute("vidgo.stage", str(task.name).rpartition(".")[2])


def shutdown_tracing() -> None:
    """Flush and stop this process's exporter (a pool child that exits)."""
    global _provider
    if _provider is not None:
        _provider.shutdown()
        _provider = None
