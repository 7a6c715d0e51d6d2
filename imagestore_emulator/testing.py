"""Run the emulator inside the current process (for tests and the pytest plugin)."""

import contextlib
import tempfile
import threading

from imagestore_emulator.server import build_parser, create_server, start_line


@contextlib.contextmanager
def running_emulator(data_dir=None, extra_args=()):
    """Start the emulator on 127.0.0.1, a free port, in a thread; yield its start-line dict.

    The dict has ``url``, ``data_dir``, ``credentials`` and, for tests, ``server`` (the
    EmulatorServer, whose ``app.providers`` and ``app.config`` may be inspected).
    """
    tmp = None
    if data_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="imagestore-emulator-")
        data_dir = tmp.name
    args = build_parser().parse_args(["--port", "0", "--data-dir", str(data_dir)] + list(extra_args))
    server, data_dir = create_server(args)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    info = start_line(server, data_dir)
    info["server"] = server
    try:
        yield info
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
        if tmp is not None:
            tmp.cleanup()
