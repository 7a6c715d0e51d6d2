"""Connections that die and servers that do not answer: the upload completes, or fails within ``timeout`` saying
what it was doing, for every provider."""

import time

import pytest

from fieldkit.proxy import FaultProxy
from fieldkit.silent import RefusedPort, SilentServer
from kit import MiB


def test_connections_reset_at_random_byte_counts(contract, store):
    src, digest = contract.image(24 * MiB + 1, seed=21)
    with FaultProxy("127.0.0.1", store.port, seed=7) as proxy:
        proxy.reset(after=(MiB, 6 * MiB), probability=0.5)
        result, run = contract.upload(src, "resets", endpoint=proxy.url(), chunk_size="2MiB", parallel=4, timeout=240)
        resets = proxy.count("reset")
    assert result["changed"] and not result.get("failed"), run.output[-3000:]
    assert resets >= 1, "the proxy reset no connection"
    assert contract.stored("resets", result) == digest
    assert contract.open_sessions("resets", result) == 0


def test_connections_dropped_silently_are_given_up_and_sent_again(contract, store):
    src, digest = contract.image(16 * MiB + 3, seed=22)
    with FaultProxy("127.0.0.1", store.port, seed=3, sockbuf=65536) as proxy:
        proxy.blackhole(after=(MiB, 4 * MiB), connections=2)
        started = time.monotonic()
        result, run = contract.upload(src, "dropped", endpoint=proxy.url(), chunk_size="2MiB", parallel=2,
                                      request_timeout=3, timeout=240)
        took = time.monotonic() - started
        dropped = proxy.count("blackhole")
    assert dropped >= 1, "the proxy dropped no connection"
    assert result["changed"] and not result.get("failed"), run.output[-3000:]
    assert contract.stored("dropped", result) == digest
    assert took < 200


@pytest.mark.parametrize("mode", ["discard", "hold"])
def test_a_server_that_never_answers_is_bounded_by_timeout(contract, tmp_path, mode):
    src, _ = contract.image(MiB, seed=23)
    with SilentServer(mode) as silent:
        started = time.monotonic()
        result, run = contract.upload(src, "silent", endpoint=silent.url(), timeout=5, request_timeout=15, retries=3)
        took = time.monotonic() - started
    assert result["failed"] and "timeout of 5 seconds reached while" in result["msg"], result["msg"]
    assert "run again" in result["msg"]
    assert result["elapsed"] <= 5 + 2.5, result["elapsed"]      # the module: within ~2 s of its timeout
    assert took < 5 + 2.5 + 15, "%.1f s (ansible's start-up included)" % took


def test_a_refused_connection_fails_in_seconds(contract):
    src, _ = contract.image(MiB, seed=24)
    with RefusedPort() as refused:
        result, run = contract.upload(src, "refused", endpoint=refused.url())
    assert result["failed"] and "connection refused" in result["msg"], result["msg"]
    assert result["elapsed"] < 3.0, result["elapsed"]
