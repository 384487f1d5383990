"""The operator console in a real browser: headless Chromium (Debian's) driven by Playwright,
against a real ``vidgo-stems gateway`` process, a real worker, a private Redis and the emulator.

Locally these tests skip when /usr/bin/chromium is missing (``apt-get install chromium``); with
``CI`` set a missing browser fails them. Screenshots of every page go to the pytest tmp folder.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support import GatewayProcess, Stack
from vidgo_stems.devstack.local import wait_for
from vidgo_stems.devstack.redis_server import free_port
from vidgo_stems.pipeline.states import JobState

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
OPERATOR_KEY = "op-" + secrets.token_hex(16)
READONLY_KEY = "ro-" + secrets.token_hex(16)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        message = "no /usr/bin/chromium: `apt-get install -y chromium` to run the console tests"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def console(redis_server, redis_client, emulator, tracks_url, tmp_path_factory):
    folder = tmp_path_factory.mktemp("console")
    port = free_port()
    stack = Stack(
        redis_client,
        redis_server.url,
        emulator,
        tracks_url,
        folder,
        VIDGO_STEMS_PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        VIDGO_STEMS_FILE_URL_SECRET=secrets.token_hex(32),
        VIDGO_STEMS_GATEWAY_API_KEYS=OPERATOR_KEY,
        VIDGO_STEMS_CONSOLE_READONLY_KEYS=READONLY_KEY,
    )
    stack.gateway = GatewayProcess(stack.env, folder / "gateway.log", port=port)
    stack.start_worker(concurrency=3, name="console")
    stack.shots = folder / "screenshots"
    stack.shots.mkdir()
    yield stack
    stack.gateway.stop()
    stack.stop()


class Page:
    """A browser tab signed in (or not) to the console, recording every browser console error."""

    def __init__(self, browser, console) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.url = console.gateway.url
        self.shots = console.shots
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)

    def sign_in(self, key: str) -> None:
        self.page.goto(f"{self.url}/console/login")
        self.page.fill("#key", key)
        self.page.click("button[type=submit]")

    def go(self, path: str) -> None:
        self.page.goto(f"{self.url}{path}")

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tab(browser, console):
    opened: list[Page] = []

    def open_tab() -> Page:
        opened.append(Page(browser, console))
        return opened[-1]

    yield open_tab
    for page in opened:
        page.close()


def run_batch(console, rows: list[str], folder: Path, **popen) -> subprocess.Popen:
    catalog = folder / f"catalog-{secrets.token_hex(3)}.csv"
    catalog.write_text("audio_url,id,title,output_type\n" + "\n".join(rows) + "\n")
    return subprocess.Popen(
        [sys.executable, "-m", "vidgo_stems.cli", "batch", str(catalog)],
        env={**console.env, "PATH": os.environ["PATH"]},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def batch_id_of(stderr: str) -> str:
    found = re.search(r"^batch (\S+):", stderr, re.M)
    assert found, stderr
    return found.group(1)


def ledger_counts(console) -> dict[str, int]:
    keys = console.ledger.keys
    return {s.value: console.ledger.redis.zcard(keys.state_index(s.value)) for s in JobState}


def page_counts(tab: Page) -> dict[str, int]:
    rows = tab.page.locator("tr[data-state]")
    return {
        rows.nth(i).get_attribute("data-state"): int(
            rows.nth(i).locator("td.num").inner_text().replace(",", "")
        )
        for i in range(rows.count())
    }


def test_console_sign_in_refuses_wrong_keys_and_read_only_or_csrf_less_actions(tab, console):
    anonymous = httpx.get(f"{console.gateway.url}/console/api/overview")
    assert anonymous.status_code == 401 and "sign in" in anonymous.json()["error"]["message"]
    assert httpx.get(f"{console.gateway.url}/console/static/console.js").status_code == 303

    stranger = tab()
    stranger.go("/console/failures")
    assert stranger.page.url.endswith("/console/login")
    stranger.shot("login")
    stranger.sign_in("not-" + OPERATOR_KEY)
    assert "not a console key" in stranger.page.inner_text("[role=alert]")
    assert stranger.context.cookies() == []

    operator = tab()
    operator.sign_in(OPERATOR_KEY)

    operator.page.wait_for_selector("#jobs-total")
    (cookie,) = operator.context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"
    assert OPERATOR_KEY not in cookie["value"]
    who = operator.page.inner_text("#who")
    assert who.startswith("key:") and "operator" in who
    no_token = operator.context.request.post(
        f"{console.gateway.url}/console/api/preview", data={"action": "retry", "job_ids": ["x"]}
    )
    assert no_token.status == 403 and "CSRF" in no_token.json()["error"]["message"]

    reader = tab()
    reader.sign_in(READONLY_KEY)
    reader.page.wait_for_selector("#jobs-total")
    reader.go("/console/failures")
    reader.page.wait_for_selector("#failure-scope")
    csrf = reader.context.request.get(f"{console.gateway.url}/console/api/session").json()["csrf"]
    refused = reader.context.request.post(
        f"{console.gateway.url}/console/api/preview",
        data={"action": "retry", "batch": "any"},
        headers={"X-CSRF-Token": csrf},
    )
    assert refused.status == 403 and "read-only" in refused.json()["error"]["message"]
    assert operator.errors == [] and reader.errors == []
    log = (console.folder / "gateway.log").read_text()
    assert OPERATOR_KEY not in log and READONLY_KEY not in log
    assert "console sign-in refused" in log and "console sign-in by key:" in log


def test_console_overview_matches_the_ledger_live_while_a_batch_runs_and_after(
    tab, console, tmp_path
):
    operator = tab()
    operator.sign_in(OPERATOR_KEY)
    operator.page.wait_for_selector("#jobs-total")
    operator.page.evaluate("window.notReloaded = true")
    before = console.ledger.redis.zcard(console.ledger.keys.created)
    rows = [f"{console.track_url()},ov-{i},Overview {i},vocals" for i in range(50)]
    running = run_batch(console, rows, tmp_path)
    try:
        # While it runs: jobs in flight on the page, every state adding up to the ledger's
        # total (constant once the batch is fed), without a reload.
        def in_flight() -> dict[str, int] | None:
            shown = page_counts(operator)
            active = sum(n for s, n in shown.items() if not JobState(s).is_terminal)
            return shown if active and sum(shown.values()) == before + 50 else None

        shown = wait_for(in_flight, timeout_s=60, what="the overview to show the batch running")
        assert sum(shown.values()) == console.ledger.redis.zcard(console.ledger.keys.created)
        operator.shot("overview")
        _, err = running.communicate(timeout=180)
    finally:
        running.kill()
    assert running.returncode == 0, err
    # After it ends: every state's count as the ledger's indexes hold it, pushed to the page.
    wait_for(
        lambda: page_counts(operator) == ledger_counts(console),
        timeout_s=20,
        what="the overview to equal the ledger",
    )
    assert page_counts(operator)["DONE"] >= 50
    assert operator.page.evaluate("window.notReloaded") is True
    operator.go("/console/batches")
    batch = batch_id_of(err)
    operator.page.wait_for_selector(f"tr[data-batch='{batch}']")
    assert "50 / 50 ended" in operator.page.inner_text(f"tr[data-batch='{batch}']")
    operator.shot("batches")
    manifest = operator.context.request.get(
        f"{console.gateway.url}/console/api/batches/{batch}/manifest"
    )
    assert manifest.status == 200 and len(manifest.text().splitlines()) == 50
    assert operator.errors == []


def test_console_failures_grouped_previewed_and_retried_paying_as_planned(tab, console, tmp_path):
    urls = [console.track_url() for _ in range(4)]
    rows = [f"{url},bad-{i},Broken {i},vocals" for i, url in enumerate(urls)]
    with console.emulator.configured(faults={"rate_malformed_stems": 1.0}):
        ran = run_batch(console, rows, tmp_path)
        _, err = ran.communicate(timeout=120)
    assert ran.returncode == 1, err
    batch = batch_id_of(err)
    dry_run = console.cli("retry", "--batch", batch, "--dry-run")
    assert "4 job(s); 4 may submit again: up to 8 credits" in dry_run.stderr

    operator = tab()
    operator.sign_in(OPERATOR_KEY)
    operator.page.wait_for_selector("#jobs-total")
    operator.go(f"/console/failures?batch={batch}")
    group = operator.page.locator("tr[data-code='vidgo_malformed_stems']")
    group.wait_for()
    assert group.locator("td.num").inner_text() == "4"
    assert "not valid JSON" in group.inner_text()
    assert f"batch {batch}" in operator.page.inner_text("#failure-scope")
    operator.shot("failures")
    submits_before = len(console.emulator.record("submit"))
    group.locator("button.action").click()
    summary = operator.page.locator("#preview-summary")
    summary.wait_for()
    assert summary.inner_text() == "4 job(s); 4 may submit again: up to 8 credits"
    operator.shot("retry-preview")
    operator.page.click("#confirm")
    operator.page.wait_for_selector("#preview-result.ok")
    assert operator.page.inner_text("#preview-result").startswith("4 job(s) retried; 4 may pay")

    jobs = console.wait_all(_batch_job_ids(console, batch), timeout_s=120)
    assert {view.state for view in jobs} == {JobState.DONE}
    assert all(any(h.get("by", "").startswith("console key:") for h in v.history) for v in jobs)
    submits = console.emulator.record("submit")[submits_before:]
    assert sorted(s["audio_url"] for s in submits if s["audio_url"] in urls) == sorted(urls)
    assert operator.errors == []


def _batch_job_ids(console, batch: str) -> list[str]:
    members = console.ledger.redis.zrange(console.ledger.keys.batch_jobs(batch), 0, -1)
    return [m.decode() for m in members]


def test_console_job_page_plays_a_stem_over_ranges_and_draws_its_waveform(tab, console):
    job_id = console.enqueue(console.track_url(), output_type="vocals", title="Player test")
    assert console.wait_terminal(job_id, timeout_s=90).state is JobState.DONE
    operator = tab()
    operator.sign_in(OPERATOR_KEY)
    operator.page.wait_for_selector("#jobs-total")
    served: list[int] = []
    operator.page.on(
        "response", lambda r: served.append(r.status) if "/v1/files/" in r.url else None
    )
    operator.go(f"/console/jobs/{job_id}")
    operator.page.wait_for_selector("canvas.waveform[data-drawn]")
    drawn = operator.page.evaluate(
        """() => { const c = document.querySelector('canvas.waveform');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; }"""
    )
    assert drawn > 1000, "the waveform canvas is (nearly) empty"
    audio = operator.page.locator("audio").first
    audio.evaluate("a => a.play().catch(() => {})")
    wait_for(
        lambda: audio.evaluate("a => a.readyState >= 1 && a.duration > 0 && !a.error"),
        timeout_s=20,
        what="the stem to load in the audio element",
    )
    wait_for(lambda: 206 in served, timeout_s=10, what="a 206 for the stem")
    assert "loudness" in operator.page.inner_text(".stem")
    operator.shot("job")
    operator.go("/console/jobs?title=Player")
    operator.page.wait_for_selector(f"tr[data-job='{job_id}']")
    operator.shot("jobs")
    assert operator.errors == []
