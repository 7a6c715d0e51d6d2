"""Fixtures of the provider contract suite (see kit.py and profiles.py)."""

import os

import pytest

from ansible_helpers import AnsibleRunner
from kit import Contract
from profiles import PROFILES


def pytest_generate_tests(metafunc):
    if "profile" in metafunc.fixturenames:
        wanted = os.environ.get("IMAGESTORE_CONTRACT_PROVIDERS")
        names = [n for n in PROFILES if not wanted or n in wanted.split(",")]
        if "extra_fault" in metafunc.fixturenames:         # a provider's own fault cases (profile.extra_faults)
            pairs = [(PROFILES[n], case) for n in names for case in sorted(PROFILES[n].extra_faults)]
            metafunc.parametrize(("profile", "extra_fault"), pairs, ids=["%s-%s" % (p.name, case) for p, case in pairs])
        else:
            metafunc.parametrize("profile", [PROFILES[n] for n in names], ids=names)


@pytest.fixture
def store(profile, tmp_path):
    started = profile.start(tmp_path)
    yield started
    started.stop()


@pytest.fixture
def ansible(tmp_path, collections_path):
    return AnsibleRunner(tmp_path / "ansible", collections_path)


@pytest.fixture
def contract(profile, store, ansible, tmp_path):
    return Contract(profile, store, ansible, tmp_path)
