"""pytest plugin of imagestore.upload (entry point ``pytest11: imagestore``); see ``plugin.py``."""

from pytest_imagestore.emulator import EmulatorProcess
from pytest_imagestore.plugin import Target

__all__ = ["EmulatorProcess", "Target"]
