"""Fixtures shared by the integration tests: a provider's profile and a store of the test's own (the contract suite's
profiles, tests/contract/profiles.py), and the ZStack target."""

import pytest

from cli_helpers import PROFILES


@pytest.fixture(params=sorted(PROFILES))
def profile(request):
    """The profile of each of the collection's providers in turn (how to start its store, name a destination...)."""
    return PROFILES[request.param]


@pytest.fixture
def store(profile, tmp_path):
    """A fresh store of the test's own for the profile's provider."""
    started = profile.start(tmp_path)
    yield started
    started.stop()


@pytest.fixture
def zs(imagestore_target):
    """The ZStack target (the emulator, or a real ZStack when configured)."""
    return imagestore_target("zstack")
