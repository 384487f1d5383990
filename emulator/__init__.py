"""A local, faithful Vidgo API for the demo and tests: real HTTP, real audio, fault injection."""

from vidgo_stems.emulator.app import create_app
from vidgo_stems.emulator.config import EmulatorConfig, FaultConfig

__all__ = ["EmulatorConfig", "FaultConfig", "create_app"]
