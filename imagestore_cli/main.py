# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``imagestore-upload``: one run of a module of the collection (image_upload, upload_session_info, _commit, _absent)
through the collection's driver, the way the module runner does it, with a progress bar or progress lines, a message
or the module's JSON, and exit codes that say how it ended (see EXIT_CODES in arguments.py)."""

import json
import os
import signal
import sys
import time

from ansible_collections.imagestore.upload.plugins.module_utils._driver import close, connect, execute
from ansible_collections.imagestore.upload.plugins.module_utils._errors import (
    BadInput, DeadlineExceeded, ImageStoreError, LocalFileError, SourceChangedError, VerificationError,
)
from ansible_collections.imagestore.upload.plugins.module_utils._options import validate
from ansible_collections.imagestore.upload.plugins.module_utils._registry import PROVIDERS

from imagestore_cli.arguments import COMMANDS, UsageError, build_parser, params_from, password, spec_of
from imagestore_cli.docs import replace_module_names
from imagestore_cli.output import PROG, Quiet, print_result, reporter_for

OK, FAILED, USAGE, INTERRUPTED, VERIFICATION = 0, 1, 2, 3, 4
#: seconds past --timeout after which the run is stopped wherever it waits (as the module runner's watchdog)
WATCHDOG_GRACE = 5
DEFAULT_INTERVAL = 30


def version():
    try:
        from importlib.metadata import version as installed
        return installed("imagestore-upload")
    except Exception:  # pylint: disable=broad-except  # run from a source tree
        return "0.1.0"


def exit_code(exc):
    if isinstance(exc, (VerificationError, SourceChangedError)):
        return VERIFICATION
    if isinstance(exc, DeadlineExceeded):
        return INTERRUPTED
    if isinstance(exc, (BadInput, LocalFileError)):
        return USAGE
    return FAILED


class Stopper:
    """SIGINT/SIGTERM: the first ends the run's budget now (the engine stops at its next step and keeps what a re-run
    resumes, as at a timeout); the second, or one before the engine runs, stops at once."""

    def __init__(self, reporter):
        self.reporter = reporter
        self.protocol = None
        self.count = 0
        self.finished = False       # the run is over: only its result is left to print

    def __call__(self, signum, frame):
        if self.finished:
            return
        self.count += 1
        name = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
        if self.count == 1 and self.protocol is not None and not getattr(self.protocol, "legacy", False):
            self.protocol.deadline.interrupt("interrupted (%s)" % name)
            self.reporter.note("%s: stopping after the requests in flight (%s again stops at once)" % (name, name))
            return
        raise KeyboardInterrupt()


class Watchdog:
    def __init__(self, seconds):
        self.seconds = seconds
        self.armed = bool(seconds) and hasattr(signal, "SIGALRM")

    def _fire(self, signum, frame):
        raise DeadlineExceeded("timeout of %d seconds reached; the run was stopped %d seconds later while it still waited"
                               % (self.seconds, WATCHDOG_GRACE))

    def __enter__(self):
        if self.armed:
            self.previous = signal.signal(signal.SIGALRM, self._fire)
            signal.setitimer(signal.ITIMER_REAL, self.seconds + WATCHDOG_GRACE)
        return self

    def __exit__(self, *exc):
        if self.armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.previous)


def main(argv=None, environ=None, stdin=None, stdout=None, stderr=None):
    environ = os.environ if environ is None else environ
    stdin = sys.stdin if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    parser = build_parser(PROVIDERS, version())
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:       # --help, --version (0) or bad usage (2): argparse said why
        return exc.code if isinstance(exc.code, int) else USAGE
    run = Run(args, environ, stdin, stdout, stderr)
    return run.main()


class Run:
    def __init__(self, args, environ, stdin, stdout, stderr):
        self.args = args
        self.environ = environ
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.command = args.command
        self.operation = COMMANDS[args.command][0]
        self.warnings = []
        self.reporter = Quiet()

    def warn(self, message):
        self.warnings.append(message)
        if not self.args.quiet:
            self.reporter.note("%s: warning: %s" % (PROG, replace_module_names(message)))

    def main(self):
        started = time.monotonic()
        spec, owners = spec_of(self.operation, PROVIDERS)
        try:
            params = params_from(self.args, spec, self.environ)
            params["password"] = password(self.args, params, self.environ, self.stdin)
            validate(params, PROVIDERS, owners, self.operation)
        except (UsageError, BadInput) as exc:
            return self.failed({"msg": str(exc)}, USAGE, started)
        if self.command == "upload":
            interval = params.get("progress_interval")
            self.reporter = reporter_for(self.stderr, self.args.quiet, DEFAULT_INTERVAL if interval is None else interval)
        stopper = Stopper(self.reporter)
        previous = dict((s, signal.signal(s, stopper)) for s in (signal.SIGINT, signal.SIGTERM))
        failure = None
        try:
            with Watchdog(params.get("timeout")):
                protocol = connect(params, PROVIDERS[params["provider"]], self.args.check, self.warn)
                stopper.protocol = protocol
                try:
                    result = execute(protocol, self.operation, self.reporter)
                finally:
                    close(protocol, self.warn)
        except ImageStoreError as exc:
            failure = dict(msg=exc.message, **exc.to_result())
            if isinstance(exc, DeadlineExceeded) and "session_cleanup" not in exc.details:
                failure["msg"] += "; run the same command again to continue"
            code = exit_code(exc)
        except KeyboardInterrupt:
            self.reporter.close()
            self.failed({"msg": "interrupted: what the store received so far stays where the provider keeps it; run the "
                                "same command again to resume"}, INTERRUPTED, started)
            self.stdout.flush()
            self.stderr.flush()
            os._exit(INTERRUPTED)      # the transfer's threads may still wait on the network: do not wait for them
        except Exception as exc:  # pylint: disable=broad-except  # a bug of ours: one line, never a traceback
            failure = dict(msg="unexpected %s: %s" % (type(exc).__name__, exc))
            code = FAILED
        finally:
            stopper.finished = True
            self.reporter.close()
        try:
            if failure is not None:
                return self.failed(failure, code, started)
            result["elapsed"] = round(time.monotonic() - started, 3)
            if self.warnings:
                result["warnings"] = list(self.warnings)
            print_result(result, self.command, self.args.json, self.args.quiet,
                         show_diff=getattr(self.args, "diff", False), out=self.stdout)
            return OK
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def failed(self, failure, code, started):
        failure = dict(failure, failed=True, elapsed=round(time.monotonic() - started, 3))
        if self.warnings:
            failure["warnings"] = list(self.warnings)
        self.stderr.write("%s: error: %s\n" % (PROG, replace_module_names(failure["msg"])))
        self.stderr.flush()
        if self.args.json:
            self.stdout.write(json.dumps(failure, indent=2, sort_keys=True, default=str) + "\n")
            self.stdout.flush()
        return code
