"""The worker supervisor: a child that dies is started again; a stop asked for is final."""

from __future__ import annotations

import signal
import subprocess
import sys

from vidgo_stems.devstack.local import wait_for
from vidgo_stems.supervise import restart_delay_s

# A child that dies with status 3 the first time (no marker file yet), then exits 0.
FLAKY = """
import pathlib, sys
marker = pathlib.Path(sys.argv[1])
runs = int(marker.read_text()) if marker.exists() else 0
marker.write_text(str(runs + 1))
sys.exit(3 if runs == 0 else 0)
"""

SUPERVISE = "import sys; from vidgo_stems.supervise import Supervisor; sys.exit(Supervisor(sys.argv[1:]).run())"


def test_a_child_that_dies_is_started_again(tmp_path):
    marker = tmp_path / "runs"
    done = subprocess.run(
        [sys.executable, "-c", SUPERVISE, sys.executable, "-c", FLAKY, str(marker)],
        timeout=30,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert marker.read_text() == "2"
    assert "worker exited with status 3" in done.stderr


def test_sigterm_stops_the_child_and_nothing_is_restarted(tmp_path):
    marker = tmp_path / "started"
    child = f"import pathlib, time; pathlib.Path({str(marker)!r}).write_text('x'); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", SUPERVISE, sys.executable, "-c", child])
    wait_for(marker.exists, timeout_s=20, what="the child to start")
    marker.unlink()
    proc.send_signal(signal.SIGTERM)
    # The supervisor exits with the child's status; had it restarted the child, it would still
    # be waiting on the new one and this wait would time out.
    assert proc.wait(timeout=20) != 0
    assert not marker.exists()


def test_restart_delay_backs_off_to_a_cap():
    assert [restart_delay_s(n) for n in (1, 2, 3, 4, 10)] == [1.0, 2.0, 4.0, 8.0, 30.0]
