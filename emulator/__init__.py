"""A local, faithful Vidgo API for the demo and tests: real HTTP, real audio, fault injection."""

from emulator.app import create_app
from emulator.config import EmulatorConfig, FaultConfig

__all__ = ["EmulatorConfig", "FaultConfig", "create_app"]
