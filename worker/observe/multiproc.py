"""The folder prometheus-client counts in under the prefork pool (``PROMETHEUS_MULTIPROC_DIR``).

prometheus-client reads the variable once, when it is first imported, so this module must not
import it: ``vidgo-stems worker`` prepares the folder before anything imports the metrics.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiproc_dir() -> Path:
    """Create (or empty) the folder the worker's processes count in, and export it in ENV.

    Left unset, it is a new folder under the system's temporary folder, so two workers on one
    host never mix their counts.
    """
    given = os.environ.get(ENV)
    folder = Path(given) if given else Path(tempfile.mkdtemp(prefix="vidgo-stems-metrics-"))
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink(missing_ok=True)
    os.environ[ENV] = str(folder)
    return folder


def multiproc_enabled() -> bool:
    return bool(os.environ.get(ENV))
