"""Fixtures shared by the ZStack integration test files."""

import pytest


@pytest.fixture
def zs(imagestore_target):
    """The ZStack target (the emulator, or a real ZStack when configured)."""
    return imagestore_target("zstack")
