"""The README's Python example, run as written (but for the track's URL) against a real worker
and the emulator."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"
PLACEHOLDER = "https://cdn.example.com/song.mp3"


@pytest.fixture
def stack(make_stack):
    return make_stack(worker="readme")


def test_the_readme_python_example_separates_a_track(stack, tmp_path):
    found = re.search(
        r"<!-- example: readme-python -->\n```python\n(.*?)```", README.read_text(), re.S
    )
    assert found, "README.md has no example readme-python"
    code = found.group(1)
    assert PLACEHOLDER in code
    script = tmp_path / "example.py"
    script.write_text(code.replace(PLACEHOLDER, stack.track_url()))
    env = {**stack.env, "PATH": os.environ["PATH"]}
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("DONE "), done.stdout
    assert "'vocals': 'file://" in done.stdout
