"""The documentation's code: every Python block compiles, and every example marked for running
(``<!-- example: NAME -->``) is one a test runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
#: Examples the tests run, and where: a new marked example needs a test that runs it.
RUN_BY_TESTS = {
    "readme-python": "tests/integration/test_docs_examples.py",
    "fastapi": "tests/integration/test_web.py",
    "django-models": "tests/integration/test_django_example.py",
    "django-views": "tests/integration/test_django_example.py",
    "django-urls": "tests/integration/test_django_example.py",
    "django-template": "tests/integration/test_django_example.py",
}
BLOCK = re.compile(r"```python\n(.*?)```", re.S)
MARKER = re.compile(r"<!-- example: ([\w-]+) -->")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_python_block_compiles(page):
    for n, block in enumerate(BLOCK.findall(page.read_text())):
        compile(block, f"{page.name} block {n + 1}", "exec")


def test_every_marked_example_is_run_by_a_test():
    marked = {name for page in PAGES for name in MARKER.findall(page.read_text())}
    assert marked == set(RUN_BY_TESTS)
    for name, test in RUN_BY_TESTS.items():
        assert name in (ROOT / test).read_text(), f"{test} does not run the example {name}"


def test_the_readme_stays_a_front_door():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250
