"""Run the emulator with uvicorn, in the foreground or in a background thread."""

from __future__ import annotations

import threading
import time

import uvicorn

from vidgo_stems.emulator.app import create_app
from vidgo_stems.emulator.config import EmulatorConfig


def build_server(config: EmulatorConfig, host: str, port: int) -> uvicorn.Server:
    app = create_app(config, base_url=f"http://{host}:{port}")
    return uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    )


def serve(config: EmulatorConfig, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve until interrupted."""
    build_server(config, host, port).run()


class BackgroundEmulator:
    """The emulator on a thread of this process: ``with BackgroundEmulator(cfg, port) as emu``."""

    def __init__(self, config: EmulatorConfig, port: int, host: str = "127.0.0.1") -> None:
        self.url = f"http://{host}:{port}"
        self.server = build_server(config, host, port)
        self.thread = threading.Thread(target=self.server.run, name="vidgo-emulator", daemon=True)

    def __enter__(self) -> BackgroundEmulator:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"the emulator did not start on {self.url}")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
