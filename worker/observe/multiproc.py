"""The folder prometheus-client counts in under the prefork pool (``PROMETHEUS_MULTIPROC_DIR``).

prometheus-client reads the variable once, when it is first imported, so this module must not
import it: ``vidgo-stems worker`` prepares the folder before anything imports the metrics.
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiproc_dir(port: int) -> Path:
    """Create (or empty) the folder the worker's processes count in, and export it in ENV.

    Left unset, it is one folder per metrics port under the system's temporary folder (each
    worker on a host needs a port of its own, so restarts reuse their folder). If another
    worker already serves that port, a fresh folder is used so its counts are left alone.
    """
    given = os.environ.get(ENV)
    if given:
        folder = Path(given)
        folder.mkdir(parents=True, exist_ok=True)
    else:
        own = _own_folder(Path(tempfile.gettempdir()) / f"vidgo-stems-metrics-{port}")
        if own is not None and _port_free(port):
            folder = own
        else:
            folder = Path(tempfile.mkdtemp(prefix=f"vidgo-stems-metrics-{port}-"))
    for stale in folder.glob("*.db"):
        stale.unlink(missing_ok=True)
    os.environ[ENV] = str(folder)
    return folder


def _own_folder(folder: Path) -> Path | None:
    """``folder``, created if need be, when it is a real folder of this user; else None (a
    shared temporary folder may hold someone else's folder or a link by that name)."""
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        if folder.is_symlink() or not folder.is_dir() or folder.stat().st_uid != os.getuid():
            return None
    except OSError:
        return None
    return folder


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def multiproc_enabled() -> bool:
    return bool(os.environ.get(ENV))
