"""The Grafana dashboard and the Prometheus rules and scrape example: they read only series the
code exports, with labels those have and the aggregation each needs, and the commands they
name exist."""

from __future__ import annotations

import json
import re
import shlex
import time
from typing import Any

import pytest

from tests.deploy.files import DEPLOY, _load_yaml, _workload
from vidgo_stems.settings import Settings

GRAFANA_DASHBOARD = DEPLOY / "grafana" / "vidgo-stems.json"
PROMETHEUS_ALERTS = DEPLOY / "prometheus" / "alerts.yaml"
PROMETHEUS_SCRAPE = DEPLOY / "prometheus" / "scrape.yaml"

# Every metric the project exports, by the name a query uses (counters with _total, histograms
# by their base name: queried as _bucket, _sum and _count), with its type, its labels and where
# it is counted. "process": counted where it happens and summed per host, so aggregated with sum
# (counters through rate or increase). "cluster": read from Redis at scrape time, the same on
# every endpoint, so aggregated with max, never sum. "endpoint": each endpoint's own view of
# Redis. A metric renamed, added or relabelled in worker/observe fails the check against the code,
# and a dashboard or rule still using the old name fails the checks of the files.
EXPORTED_METRICS: dict[str, tuple[str, str, frozenset[str]]] = {
    "celery_task_sent_total": ("counter", "process", frozenset({"name", "hostname"})),
    "celery_task_received_total": ("counter", "process", frozenset({"name", "hostname"})),
    "celery_task_started_total": ("counter", "process", frozenset({"name", "hostname"})),
    "celery_task_succeeded_total": ("counter", "process", frozenset({"name", "hostname"})),
    "celery_task_failed_total": (
        "counter",
        "process",
        frozenset({"name", "hostname", "exception"}),
    ),
    "celery_task_retried_total": ("counter", "process", frozenset({"name", "hostname"})),
    "celery_task_rejected_total": ("counter", "process", frozenset({"name", "hostname"})),
    "celery_task_revoked_total": ("counter", "process", frozenset({"name", "hostname"})),
    "celery_task_runtime": ("histogram", "process", frozenset({"name", "hostname"})),
    "celery_worker_up": ("gauge", "process", frozenset({"hostname"})),
    "vidgo_stems_jobs_entered_total": ("counter", "process", frozenset({"state"})),
    "vidgo_stems_jobs_finished_total": ("counter", "process", frozenset({"state"})),
    "vidgo_stems_stage_duration_seconds": (
        "histogram",
        "process",
        frozenset({"stage", "outcome"}),
    ),
    "vidgo_stems_vidgo_requests_total": ("counter", "process", frozenset({"endpoint", "outcome"})),
    "vidgo_stems_vidgo_request_duration_seconds": ("histogram", "process", frozenset({"endpoint"})),
    "vidgo_stems_vidgo_tasks_paid_total": ("counter", "process", frozenset()),
    "vidgo_stems_http_requests_total": (
        "counter",
        "process",
        frozenset({"route", "method", "status"}),
    ),
    "vidgo_stems_http_request_duration_seconds": (
        "histogram",
        "process",
        frozenset({"route", "method"}),
    ),
    "vidgo_stems_vidgo_resubmits_total": ("counter", "process", frozenset()),
    "vidgo_stems_ambiguous_submits_total": ("counter", "process", frozenset()),
    "vidgo_stems_submits_held_unreplicated_total": ("counter", "process", frozenset()),
    "vidgo_stems_credits_spent_total": ("counter", "process", frozenset()),
    "vidgo_stems_poll_lateness_seconds": ("histogram", "process", frozenset()),
    "vidgo_stems_webhook_deliveries_total": ("counter", "process", frozenset({"outcome"})),
    "vidgo_stems_download_bytes_total": ("counter", "process", frozenset()),
    "vidgo_stems_recoveries_total": ("counter", "process", frozenset()),
    "vidgo_stems_schedule_promoted_total": ("counter", "process", frozenset()),
    "vidgo_stems_cluster_scrape_ok": ("gauge", "endpoint", frozenset()),
    "vidgo_stems_jobs": ("gauge", "cluster", frozenset({"state"})),
    "celery_queue_length": ("gauge", "cluster", frozenset({"queue_name"})),
    "vidgo_stems_inflight_slots_used": ("gauge", "cluster", frozenset()),
    "vidgo_stems_inflight_slots_cap": ("gauge", "cluster", frozenset()),
    "vidgo_stems_polls_pending": ("gauge", "cluster", frozenset()),
    "vidgo_stems_polls_overdue": ("gauge", "cluster", frozenset()),
    "vidgo_stems_poll_oldest_overdue_seconds": ("gauge", "cluster", frozenset()),
    "vidgo_stems_rate_bucket_tokens": ("gauge", "cluster", frozenset({"kind"})),
    "vidgo_stems_rate_bucket_rate": ("gauge", "cluster", frozenset({"kind"})),
    "vidgo_stems_rate_limit_cooldown_seconds": ("gauge", "cluster", frozenset()),
    "vidgo_stems_submits_paused_seconds": ("gauge", "cluster", frozenset()),
    "vidgo_stems_credits_balance": ("gauge", "cluster", frozenset()),
    "vidgo_stems_credits_balance_age_seconds": ("gauge", "cluster", frozenset()),
    "vidgo_stems_workers_seen": ("gauge", "cluster", frozenset()),
    "vidgo_stems_events_total": ("counter", "cluster", frozenset({"event"})),
}

HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# Labels Prometheus adds to every series it scrapes.
TARGET_LABELS = frozenset({"instance", "job"})
# What the dashboard leaves out on purpose: messages published and received (runs started and
# the queue length tell more).
NOT_ON_DASHBOARD = {"celery_task_sent_total", "celery_task_received_total"}
# Grafana's interval variables, as a duration Prometheus would get for them.
GRAFANA_INTERVALS = {
    "$__rate_interval": "1m",
    "${__rate_interval}": "1m",
    "$__interval": "30s",
    "${__interval}": "30s",
    "$__range": "6h",
    "${__range}": "6h",
}
METRIC_NAME = re.compile(r"\b(?:celery|vidgo_stems)_[a-z_]+")
RATE_FUNCTIONS = {"rate", "irate", "increase"}
# The alerts the operators rely on, and what each must read.
REQUIRED_ALERTS: dict[str, set[str]] = {
    "VidgoStemsNoWorkers": {"celery_worker_up", "vidgo_stems_workers_seen"},
    "VidgoStemsRedisUnreadable": {"vidgo_stems_cluster_scrape_ok"},
    "VidgoStemsJobFailureRatioHigh": {"vidgo_stems_jobs_finished_total"},
    "VidgoStemsPollLatenessHigh": {"vidgo_stems_poll_lateness_seconds_bucket"},
    "VidgoStemsPollsOverdue": {"vidgo_stems_poll_oldest_overdue_seconds"},
    "VidgoStems429Storm": {"vidgo_stems_vidgo_requests_total"},
    "VidgoStemsRateLimitCooldown": {"vidgo_stems_rate_limit_cooldown_seconds"},
    "VidgoStemsCreditsLow": {"vidgo_stems_credits_balance"},
    "VidgoStemsSubmitsPaused": {"vidgo_stems_submits_paused_seconds"},
    "VidgoStemsQueueBacklogGrowing": {"celery_queue_length"},
}
SEVERITIES = {"critical", "warning", "info"}
# As Prometheus reads `for:` (units largest first, each at most once).
PROMETHEUS_DURATION = re.compile(r"(?=.)(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?")


def _metric_of(series: str) -> str:
    """The EXPORTED_METRICS entry a queried series belongs to (a histogram's _bucket, _sum and
    _count belong to the histogram)."""
    if series in EXPORTED_METRICS and EXPORTED_METRICS[series][0] != "histogram":
        return series
    for suffix in HISTOGRAM_SUFFIXES:
        base = series.removesuffix(suffix)
        if base != series and EXPORTED_METRICS.get(base, ("",))[0] == "histogram":
            return base
    raise AssertionError(f"{series} is not a series the project exports")


def _selectors(expr: str) -> list[tuple[Any, list[Any]]]:
    """Every series selector in a PromQL expression, with the nodes above it (outermost first).
    The expression must parse: syntax, function names and argument types are checked."""
    import promql_parser

    try:
        tree = promql_parser.parse(expr)
    except ValueError as exc:
        raise AssertionError(f"{expr!r} does not parse: {exc}") from None
    found: list[tuple[Any, list[Any]]] = []
    stack: list[Any] = []

    def enter(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append((node, list(stack)))
        stack.append(node)

    def leave(node: Any) -> None:
        stack.pop()

    promql_parser.walk(tree, enter, leave)
    return found


def _check_expr(expr: str) -> set[str]:
    """Checks one PromQL expression and returns the series it reads: every series is one the
    project exports, read with labels it has; cluster series are aggregated with max, process
    counters and histograms with sum over a rate; counters are only read through a rate."""
    import promql_parser

    named = set(METRIC_NAME.findall(expr))
    selectors = _selectors(expr)
    series = {selector.name for selector, _ in selectors}
    assert None not in series, f"{expr!r}: a selector without a metric name"
    assert named == series, f"{expr!r}: names {named} but selects {series}"
    for selector, above in selectors:
        metric = _metric_of(selector.name)
        kind, scope, labels = EXPORTED_METRICS[metric]
        known = labels | TARGET_LABELS | ({"le"} if selector.name.endswith("_bucket") else set())
        for matcher in selector.matchers.matchers:
            assert matcher.name in known, f"{expr!r}: {metric} has no label {matcher.name}"
        aggregates = [node for node in above if isinstance(node, promql_parser.AggregateExpr)]
        for aggregate in aggregates:
            modifier = aggregate.modifier
            if modifier is not None and modifier.type == promql_parser.AggModifierType.By:
                missing = set(modifier.labels) - known
                assert not missing, f"{expr!r}: {metric} has no label {missing}"
        calls = [node.func.name for node in above if isinstance(node, promql_parser.Call)]
        counted = kind == "counter" or selector.name.endswith(HISTOGRAM_SUFFIXES)
        if counted:
            assert calls and calls[-1] in RATE_FUNCTIONS, f"{expr!r}: {metric} needs rate()"
        else:
            assert not set(calls) & RATE_FUNCTIONS, f"{expr!r}: rate() of the gauge {metric}"
        nearest = str(aggregates[-1].op) if aggregates else None
        if scope == "cluster":
            assert nearest == "max", f"{expr!r}: {metric} is a cluster series: max, never sum"
        elif counted:
            assert nearest == "sum", f"{expr!r}: {metric} is counted per process: sum it"
    return series


def _exported_by_the_code(make_settings: Any) -> dict[str, tuple[str, str, frozenset[str]]]:
    """What worker/observe exports: the process metrics it defines, and the families the
    cluster collector yields from a Redis (fakeredis) holding one of everything."""
    import fakeredis
    from prometheus_client.metrics import MetricWrapperBase

    from vidgo_stems.monitor.cluster import ClusterCollector
    from vidgo_stems.observe import metrics
    from vidgo_stems.pipeline.ledger import Ledger
    from vidgo_stems.vidgo.gate import VidgoGate

    found: dict[str, tuple[str, str, frozenset[str]]] = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            (family,) = value.describe()
            name = family.name + ("_total" if family.type == "counter" else "")
            found[name] = (family.type, "process", frozenset(value._labelnames))
    client = fakeredis.FakeRedis()
    settings = make_settings(redis_key_prefix="deploy")
    ledger = Ledger(client, prefix="deploy")
    ledger.bump_counter("stalls")
    client.rpush("vidgo", "message")
    VidgoGate(client, prefix="deploy").record_balance(1000, at=time.time())
    for family in ClusterCollector(client, ledger, settings, ["vidgo"]).collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        scope = "endpoint" if family.name == "vidgo_stems_cluster_scrape_ok" else "cluster"
        labels = frozenset(key for sample in family.samples for key in sample.labels)
        found[name] = (family.type, scope, labels)
    return found


def _cli_commands() -> dict[str, set[str]]:
    """`vidgo-stems` subcommands and the options each takes."""
    from vidgo_stems.cli import main

    return {
        name: {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
        for name, command in main.commands.items()
    }


def _check_commands(text: str) -> None:
    """Every `vidgo-stems ...` command quoted in text exists, with the options it is given."""
    commands = _cli_commands()
    for quoted in re.findall(r"`(vidgo-stems [^`]+)`", text):
        words = shlex.split(quoted)
        assert words[1] in commands, f"{quoted}: no such command"
        for word in words[2:]:
            if word.startswith("--"):
                assert word.split("=")[0] in commands[words[1]], f"{quoted}: no option {word}"


def _dashboard() -> dict[str, Any]:
    return json.loads(GRAFANA_DASHBOARD.read_text())


def _dashboard_panels() -> list[dict[str, Any]]:
    panels = []
    for panel in _dashboard()["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # the panels of a collapsed row
    return panels


def _dashboard_exprs() -> list[str]:
    exprs = []
    for panel in _dashboard_panels():
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, duration in GRAFANA_INTERVALS.items():
                expr = expr.replace(variable, duration)
            assert "$" not in expr, f"{panel['title']}: an unknown variable in {expr!r}"
            exprs.append(expr)
    return exprs


def _alert_rules() -> list[dict[str, Any]]:
    document = _load_yaml(PROMETHEUS_ALERTS.read_text())
    assert set(document) == {"groups"}
    rules = []
    for group in document["groups"]:
        assert group["name"] and group["rules"]
        rules.extend(group["rules"])
    return rules


def test_the_metric_list_is_what_the_code_exports(make_settings):
    assert _exported_by_the_code(make_settings) == EXPORTED_METRICS


def test_dashboard_imports_with_a_prometheus_data_source_variable():
    dashboard = _dashboard()
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["uid"] and dashboard["title"]
    assert dashboard.get("id") is None  # Grafana assigns its own on import
    (variable,) = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert (variable["name"], variable["query"]) == ("DS_PROMETHEUS", "prometheus")
    source = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    panels = _dashboard_panels()
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in panels:
        position = panel["gridPos"]
        assert position["x"] + position["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == source, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", source) == source, panel["title"]
            assert target["expr"].strip(), panel["title"]
    # Panels do not overlap.
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        position = panel["gridPos"]
        for x in range(position["x"], position["x"] + position["w"]):
            for y in range(position["y"], position["y"] + position["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps another panel"
                cells.add((x, y))


def test_dashboard_queries_parse_and_read_only_exported_series_the_right_way():
    used: set[str] = set()
    for expr in _dashboard_exprs():
        used |= {_metric_of(series) for series in _check_expr(expr)}
    assert used == set(EXPORTED_METRICS) - NOT_ON_DASHBOARD


def test_dashboard_descriptions_name_real_commands():
    _check_commands(GRAFANA_DASHBOARD.read_text())


def test_alert_rules_load_and_each_says_what_to_do():
    rules = _alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)), "an alert name repeats"
    assert set(REQUIRED_ALERTS) <= set(names), set(REQUIRED_ALERTS) - set(names)
    for rule in rules:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert PROMETHEUS_DURATION.fullmatch(str(rule["for"])), rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        annotations = rule["annotations"]
        assert set(annotations) >= {"summary", "description"}, rule["alert"]
        assert annotations["summary"].strip() and "\n" not in annotations["summary"]
        # What to do: at least one command or setting to reach for.
        assert "`" in annotations["description"], rule["alert"]
        _check_commands(annotations["description"])


@pytest.mark.parametrize("name", sorted(REQUIRED_ALERTS))
def test_each_required_alert_reads_what_it_is_about(name):
    (rule,) = [rule for rule in _alert_rules() if rule["alert"] == name]
    assert REQUIRED_ALERTS[name] <= _check_expr(rule["expr"])


def test_every_alert_expression_parses_and_reads_only_exported_series_the_right_way():
    for rule in _alert_rules():
        _check_expr(rule["expr"])


def test_the_expression_checks_catch_the_usual_mistakes():
    for wrong in (
        "sum(vidgo_stems_jobs)",  # a cluster gauge summed: counts it once per endpoint
        "max(rate(vidgo_stems_jobs_finished_total[5m]))",  # a process counter not summed
        "sum(vidgo_stems_jobs_finished_total)",  # a counter read without rate()
        "max(rate(celery_queue_length[5m]))",  # rate() of a gauge
        "max(vidgo_stems_job)",  # no such metric
        "max by (queue) (celery_queue_length)",  # no such label
        "sum(rate(vidgo_stems_jobs_finished_total[5m])",  # unbalanced
        "histogram_quantile(0.9, sum by (le) (vidgo_stems_poll_lateness_seconds_bucket))",
    ):
        with pytest.raises(AssertionError):
            _check_expr(wrong)


def test_scrape_example_matches_the_ports_and_the_rule_file():
    from vidgo_stems.cli import main

    config = _load_yaml(PROMETHEUS_SCRAPE.read_text())
    assert config["rule_files"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert len(jobs) == len(config["scrape_configs"])
    metrics_port = Settings.model_fields["metrics_port"].default
    (gateway_port,) = [p.default for p in main.commands["gateway"].params if p.name == "port"]
    ports = {
        name: {
            int(target.rsplit(":", 1)[1])
            for static in job.get("static_configs", [])
            for target in static["targets"]
        }
        | {int(dns["port"]) for dns in job.get("dns_sd_configs", [])}
        for name, job in jobs.items()
    }
    assert ports["vidgo-stems-worker"] == ports["vidgo-stems-compose-worker"] == {metrics_port}
    assert ports["vidgo-stems-gateway"] == {gateway_port}
    # Kubernetes pods: the annotations the manifests carry decide what is scraped, and where.
    pods = jobs["vidgo-stems-pods"]
    relabelled = {
        label for rule in pods["relabel_configs"] for label in rule.get("source_labels", [])
    }
    for annotation in ("scrape", "port", "path"):
        assert f"__meta_kubernetes_pod_annotation_prometheus_io_{annotation}" in relabelled
    for workload in ("worker", "gateway"):
        annotations = _workload(workload)["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert int(annotations["prometheus.io/port"]) == (
            metrics_port if workload == "worker" else gateway_port
        )
