"""Operations on real processes: two prefork workers (4 children each) on a private emulator,
their Prometheus endpoints, their logs (one JSON, one plain text) and their heartbeat files.

The emulator is this module's own, so its record holds exactly the requests these workers made.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from vidgo_stems.emulator import EmulatorConfig
from vidgo_stems.emulator.server import BackgroundEmulator
from tests.support import API_KEY, Emulator, Receiver, Stack
from vidgo_stems.devstack.local import wait_for
from vidgo_stems.devstack.redis_server import free_port
from vidgo_stems.pipeline.states import JobState

pytestmark = pytest.mark.integration

JOBS = 12
VIDGO_API_CALLS = ("submit", "detail", "status", "balance")

#: Every secret a worker holds, made recognisable so the logs can be searched for them.
SECRETS = {
    "VIDGO_STEMS_WEBHOOK_SECRET": "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
    "VIDGO_STEMS_FILE_URL_SECRET": "fus-" + secrets.token_hex(24),
    "VIDGO_STEMS_GATEWAY_API_KEYS": "gwk-" + secrets.token_hex(16),
    "AWS_SECRET_ACCESS_KEY": "aws-" + secrets.token_hex(20),
}


@dataclass
class Host:
    name: str
    metrics_port: int
    multiproc_dir: Path
    heartbeat: Path
    log: Path

    def scrape(self) -> dict[tuple[str, tuple], float]:
        text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10).text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }


@dataclass
class Run:
    stack: Stack
    emulator: Emulator
    hosts: list[Host]
    views: list
    receiver: Receiver


def total(samples: dict, metric: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == metric and want <= set(ls))


def summed(hosts: list[Host], metric: str, **labels: str) -> float:
    return sum(total(host.scrape(), metric, **labels) for host in hosts)


@pytest.fixture(scope="module")
def run(redis_server, redis_client, tracks_url, tmp_path_factory):
    folder = tmp_path_factory.mktemp("operations")
    config = EmulatorConfig(
        api_key=API_KEY, queue_s=0.3, run_s=0.6, sample_rate=22050, synth_duration_s=1.0
    )
    receiver = Receiver()
    with BackgroundEmulator(config, free_port()) as server:
        emulator = Emulator(server.url)
        stack = Stack(
            redis_client,
            redis_server.url,
            emulator,
            tracks_url,
            folder,
            VIDGO_STEMS_ALLOW_PRIVATE_WEBHOOK_HOSTS="true",
            **SECRETS,
        )
        hosts = []
        for name, log_format in (("ops-a", "json"), ("ops-b", "plain")):
            host = Host(
                name,
                free_port(),
                folder / f"{name}-metrics",
                folder / f"{name}-run" / "heartbeat",
                folder / f"worker-{len(hosts)}.log",
            )
            stack.start_worker(
                concurrency=4,
                name=name,
                env={
                    "VIDGO_STEMS_METRICS_PORT": str(host.metrics_port),
                    "VIDGO_STEMS_METRICS_ADDR": "127.0.0.1",
                    "PROMETHEUS_MULTIPROC_DIR": str(host.multiproc_dir),
                    "VIDGO_STEMS_LOG_FORMAT": log_format,
                    "VIDGO_STEMS_HEARTBEAT_FILE": str(host.heartbeat),
                },
            )
            hosts.append(host)
        job_ids = [
            stack.enqueue(
                stack.track_url(),
                output_type="general",
                webhook_url=f"{receiver.url}/hooks" if n % 3 == 0 else None,
            )
            for n in range(JOBS)
        ]
        views = stack.wait_all(job_ids, timeout_s=120)
        try:
            yield Run(stack, emulator, hosts, views, receiver)
        finally:
            stack.stop()
            receiver.close()
            emulator.close()


def test_every_job_ended_done(run):
    assert [v.state for v in run.views] == [JobState.DONE] * JOBS, [v.error for v in run.views]


def test_scraped_metrics_add_up_across_two_prefork_hosts(run):
    hosts = run.hosts
    done = int(run.stack.ledger.redis.zcard(run.stack.ledger.keys.state_index("DONE")))
    assert done == JOBS
    # A task's counters land just after the ledger moves: wait for the last ones. Each job's
    # post-processing is two vidgo.postprocess messages (the fan-out, then the join) and one
    # vidgo.postprocess_stem per part (six stems and the source).
    wait_for(
        lambda: (
            summed(hosts, "celery_task_succeeded_total", name="vidgo.postprocess") == 2 * JOBS
            and summed(hosts, "celery_task_succeeded_total", name="vidgo.postprocess_stem")
            == 7 * JOBS
        ),
        timeout_s=15,
        what="every post-processing success to be counted",
    )
    assert summed(hosts, "vidgo_stems_jobs_finished_total", state="DONE") == done
    assert summed(hosts, "vidgo_stems_jobs_entered_total", state="DONE") == done
    assert summed(hosts, "vidgo_stems_jobs_entered_total", state="SUBMITTED") == JOBS

    record = Counter(e["kind"] for e in run.emulator.record() if e["kind"] in VIDGO_API_CALLS)
    assert summed(hosts, "vidgo_stems_vidgo_requests_total") == sum(record.values())
    for ours, theirs in (("submit", "submit"), ("music_detail", "detail")):
        assert summed(hosts, "vidgo_stems_vidgo_requests_total", endpoint=ours) == record[theirs]
    assert summed(hosts, "vidgo_stems_vidgo_tasks_paid_total") == len(run.emulator.tasks())
    assert summed(hosts, "vidgo_stems_vidgo_requests_total", outcome="2xx") == sum(record.values())

    originals = [run.stack.ledger.get(view.job_id).stems for view in run.views]
    stem_bytes = sum(stem.bytes for stems in originals for stem in stems.values())
    assert summed(hosts, "vidgo_stems_download_bytes_total") == stem_bytes
    polls = summed(hosts, "celery_task_started_total", name="vidgo.poll")
    assert summed(hosts, "vidgo_stems_poll_lateness_seconds_count") == polls > 0
    durations = "vidgo_stems_stage_duration_seconds_count"
    assert summed(hosts, durations, stage="postprocess") == 2 * JOBS  # fan-out and join
    assert summed(hosts, durations, stage="postprocess_stem") == 7 * JOBS

    # Per-child values: both hosts ran tasks in more than one child, and the sums above (which
    # match the ledger and the emulator exactly) are sums over all of them.
    for host in hosts:
        children = {p.stem.rpartition("_")[2] for p in host.multiproc_dir.glob("counter_*.db")}
        assert len(children) >= 2, (host.name, children)
        assert total(host.scrape(), "celery_worker_up") == 1


def test_cluster_gauges_read_the_ledger_and_agree_on_every_host(run):
    for host in run.hosts:
        samples = host.scrape()
        assert samples[("vidgo_stems_cluster_scrape_ok", ())] == 1
        assert samples[("vidgo_stems_jobs", (("state", "DONE"),))] == JOBS
        assert samples[("vidgo_stems_jobs", (("state", "RUNNING"),))] == 0
        assert samples[("vidgo_stems_polls_pending", ())] == 0
        assert samples[("vidgo_stems_inflight_slots_used", ())] == 0
        assert samples[("celery_queue_length", (("queue_name", run.stack.queue),))] == 0
        assert samples[("vidgo_stems_workers_seen", ())] == 2
        # One worker's sweep read the balance at start; every endpoint reports that reading.
        (read,) = [e for e in run.emulator.record() if e["kind"] == "balance"]
        assert samples[("vidgo_stems_credits_balance", ())] == read["credits"]


def test_webhook_deliveries_are_counted_by_outcome(run):
    subscribed = len(range(0, JOBS, 3))
    wait_for(lambda: len(run.receiver.requests) >= subscribed, timeout_s=30, what="webhooks")
    wait_for(
        lambda: (
            summed(run.hosts, "vidgo_stems_webhook_deliveries_total", outcome="delivered")
            == subscribed
        ),
        timeout_s=15,
        what="webhook deliveries to be counted",
    )


def json_lines(path: Path) -> list[dict]:
    lines = [line for line in path.read_text().splitlines() if line.startswith("{")]
    return [json.loads(line) for line in lines]  # every one must parse


def test_json_logs_parse_and_each_transition_names_the_task_the_job_has_after_it(run):
    a, b = run.hosts
    records = json_lines(a.log)
    assert records, "host a wrote no JSON lines"
    for record in records:
        assert {"time", "level", "logger", "message"} <= record.keys()
    moves = [r for r in records if "to_state" in r]
    assert moves, "no transition lines in the JSON log"
    for move in moves:
        assert move["job_id"] and move["stage"] and move["attempt"] >= 1
        assert isinstance(move["duration_s"], float)
        assert move["message"].startswith(f"job {move['job_id']} {move['from_state']} -> ")

    # The SUBMITTED line of every job (on either host) names the task it was just given.
    first_task = {v.job_id: v.vidgo_task_id for v in run.views}
    submitted = {m["job_id"]: m["vidgo_task_id"] for m in moves if m["to_state"] == "SUBMITTED"}
    for line in b.log.read_text().splitlines():
        if "to_state=SUBMITTED" in line:
            pairs = dict(p.split("=", 1) for p in line.split() if "=" in p)
            submitted[pairs["job_id"]] = pairs["vidgo_task_id"]
    assert submitted == first_task


def test_plain_logs_carry_the_same_fields_as_key_value_pairs(run):
    plain = [line for line in run.hosts[1].log.read_text().splitlines() if "to_state=" in line]
    assert plain
    for line in plain:
        for field in ("job_id=", "stage=", "attempt=", "duration_s=", "from_state=", "event="):
            assert field in line, line


def test_no_secret_reaches_either_log(run):
    text = "\n".join(host.log.read_text() for host in run.hosts)
    assert "to_state" in text  # the logs are the real thing, not empty
    for name, value in [*SECRETS.items(), ("VIDGO_API_KEY", API_KEY)]:
        assert value not in text, f"{name} leaked into a worker log"
        assert json.dumps(value)[1:-1] not in text, f"{name} leaked, JSON-escaped"


def healthcheck(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vidgo_stems.cli", "healthcheck", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )


def test_the_heartbeat_file_says_live_and_ready_and_goes_stale(run):
    host = run.hosts[0]
    ok = healthcheck("--file", str(host.heartbeat), "--max-age", "30", "--ready")
    assert ok.returncode == 0, ok.stderr
    beat = json.loads(host.heartbeat.read_text())
    assert beat["redis"] is True and time.time() - beat["at"] < 30
    stale = healthcheck("--file", str(host.heartbeat), "--max-age", "0.001")
    assert stale.returncode == 1 and "unhealthy: last heartbeat" in stale.stderr
    missing = healthcheck("--file", str(host.heartbeat.with_name("nothing")))
    assert missing.returncode == 1 and "no heartbeat" in missing.stderr


def test_stats_shows_the_cluster_as_text_and_json(run):
    as_json = run.stack.cli("stats", "--json")
    assert as_json.returncode == 0, as_json.stderr
    snap = json.loads(as_json.stdout)
    assert snap["jobs"]["DONE"] == JOBS and snap["polls_pending"] == 0
    assert snap["in_flight"] == 0 and len(snap["workers"]) == 2
    assert snap["finished_last_10min"] == JOBS
    text = run.stack.cli("stats")
    assert text.returncode == 0, text.stderr
    assert f"DONE {JOBS}" in text.stdout
    assert "0 pending, 0 overdue" in text.stdout
    assert f"{JOBS} in the last 10 minutes" in text.stdout
    assert "no counters yet" not in text.stdout


def test_the_gateway_says_how_it_runs_serves_cluster_metrics_and_logs_json(run, tmp_path):
    from tests.support import GatewayProcess

    log = tmp_path / "gateway.log"
    gateway = GatewayProcess({**run.stack.env, "VIDGO_STEMS_LOG_FORMAT": "json"}, log)
    try:
        text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
        key = SECRETS["VIDGO_STEMS_GATEWAY_API_KEYS"]
        read = httpx.get(
            f"{gateway.url}/v1/jobs/{run.views[0].job_id}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )
        assert read.status_code == 200
    finally:
        gateway.stop()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("vidgo_stems_jobs", (("state", "DONE"),))] == JOBS
    output = log.read_text()
    assert f"vidgo-stems gateway on {gateway.url}" in output
    assert "auth on (1 jobs API key)" in output and "logs json" in output
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert records and all(r["level"] and r["time"] for r in records)
    assert not [r for r in records if "color_message" in r]
    for value in SECRETS.values():
        assert value not in output


def test_a_heartbeat_file_without_a_time_is_unhealthy_not_a_traceback(tmp_path):
    beat = tmp_path / "heartbeat"
    beat.write_text('{"at": "soon", "redis": true}')
    done = healthcheck("--file", str(beat))
    assert done.returncode == 1 and "holds no heartbeat time" in done.stderr
    assert "Traceback" not in done.stderr
