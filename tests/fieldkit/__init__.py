"""fieldkit: test tools that make uploads fail the way the field does.

Importable as ``fieldkit`` from any test under ``tests/`` (pytest puts ``tests/`` on ``sys.path`` for
``tests/conftest.py``). Standard library only. Every tool is a context manager that releases what it
holds (threads, sockets, mounts, loop devices, processes) on exit, also when the test fails; every wait
is bounded. See README.md in this folder.

- ``fieldkit.proxy``: TCP proxy that passes, resets (RST), silently drops, stalls or delays connections.
- ``fieldkit.silent``: servers that never answer, close at once, and a port that refuses connections.
- ``fieldkit.fullfs``: a small filesystem (tmpfs or loop ext4) that runs out of space.
- ``fieldkit.special``: FIFOs, UNIX socket files, character and loop block devices as upload sources.
- ``fieldkit.procs``: find processes by command line or environment and SIGKILL their trees; wait_until.
"""

TICK = 0.05
"""Seconds between checks of a stop flag in every loop of fieldkit (how quickly the tools stop)."""
