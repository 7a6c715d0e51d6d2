"""Command line and start-up of the emulator."""

import argparse
import importlib
import json
import os
import signal
import ssl
import sys
import tempfile
import threading

from imagestore_emulator.app import App
from imagestore_emulator.faults import Faults
from imagestore_emulator.httpd import EmulatorServer
from imagestore_emulator.settings import Config, parse_size

# provider name -> (module, class); a provider whose module is absent is simply not served
PROVIDERS = (
    ("servicefabric", "imagestore_emulator.servicefabric", "ServiceFabricAPI"),
    ("vsphere", "imagestore_emulator.vsphere", "VSphereAPI"),
    ("zstack", "imagestore_emulator.zstack", "ZStackAPI"),
)


def build_parser():
    p = argparse.ArgumentParser(prog="imagestore-emulator", description=__doc__)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port to listen on; 0 picks a free one (default)")
    p.add_argument("--data-dir", help="where sessions, chunks and files live (default: a new temporary dir)")
    p.add_argument("--tls-cert", help="PEM certificate: serve HTTPS")
    p.add_argument("--tls-key", help="PEM private key of --tls-cert")
    p.add_argument("--client-ca", help="PEM CA bundle: require client certificates signed by it")
    p.add_argument("--latency-ms", type=int, default=None, help="delay before every API response")
    p.add_argument("--body-timeout", type=float, default=None, dest="body_timeout_seconds", metavar="SECONDS",
                   help="abandon a request whose body sends nothing for this long, as a gateway does (default 60; 0: never)")
    p.add_argument("--max-file-size", type=_size, default=None, metavar="SIZE",
                   help="largest file or image a store accepts, e.g. 64G (default 64 GiB); larger ones are refused "
                        "in the provider's error format")
    p.add_argument("--sf-session-expiry", type=float, default=None, dest="sf_session_expiry_seconds",
                   help="Service Fabric upload session expiry in seconds after the last chunk (default 1800)")
    p.add_argument("--sf-commit-seconds", type=float, default=None, dest="sf_commit_seconds",
                   help="Service Fabric: every commit takes this long (default 0); past the request's timeout it "
                        "answers 504 FABRIC_E_TIMEOUT and completes in the background")
    p.add_argument("--sf-cert-renegotiation", action="store_true", default=None, dest="sf_cert_renegotiation",
                   help="Service Fabric with --client-ca: behave like an HTTP.sys gateway that renegotiates TLS for the "
                        "client certificate (a body over 48 KiB as the first request of a connection: 403)")
    p.add_argument("--vsphere-session-expiry", type=float, default=None, dest="vsphere_session_expiry_seconds",
                   help="vSphere update session idle expiry in seconds (default 300)")
    p.add_argument("--zstack-idle", type=float, default=None, dest="zstack_idle_seconds",
                   help="ZStack upload idle limit in seconds (default 30)")
    p.add_argument("--fault", action="append", default=[], metavar="JSON",
                   help="a fault rule to apply from the start (repeatable); see imagestore_emulator/faults.py")
    p.add_argument("--fault-seed", type=int, default=0, help="seed of the fault rules' probabilities")
    p.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return p


def _size(text):
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def load_providers(data_dir, config):
    providers = []
    for name, module, cls in PROVIDERS:
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            if getattr(exc, "name", None) != module:
                raise
            continue
        providers.append(getattr(mod, cls)(os.path.join(data_dir, name), config))
    return providers


def tls_context(args):
    if not args.tls_cert:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.tls_cert, args.tls_key)
    if args.client_ca:
        ctx.load_verify_locations(args.client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def create_server(args):
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="imagestore-emulator-")
    os.makedirs(data_dir, exist_ok=True)
    config = Config(latency_ms=args.latency_ms,
                    body_timeout_seconds=args.body_timeout_seconds,
                    max_file_size=args.max_file_size,
                    sf_commit_seconds=args.sf_commit_seconds,
                    sf_cert_renegotiation=args.sf_cert_renegotiation,
                    sf_session_expiry_seconds=args.sf_session_expiry_seconds,
                    vsphere_session_expiry_seconds=args.vsphere_session_expiry_seconds,
                    zstack_idle_seconds=args.zstack_idle_seconds)
    faults = Faults(args.fault_seed)
    faults.add([json.loads(rule) for rule in args.fault])
    app = App(data_dir, config, load_providers(data_dir, config), faults)
    server = EmulatorServer(app, args.host, args.port, tls_context(args), verbose=args.verbose,
                            client_certs=bool(args.client_ca))
    return server, data_dir


def start_line(server, data_dir):
    host, port = server.server_address[:2]
    scheme = "https" if server.tls else "http"
    shown = "[%s]" % host if ":" in host else host
    config = server.app.config
    return {
        "url": "%s://%s:%d" % (scheme, shown, port),
        "pid": os.getpid(),
        "data_dir": data_dir,
        "providers": [p.name for p in server.app.providers],
        "credentials": {
            "vsphere": {"username": config["vsphere_username"], "password": config["vsphere_password"]},
            "zstack": {"username": config["zstack_username"], "password": config["zstack_password"]},
        },
    }


def main(argv=None):
    args = build_parser().parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        print("imagestore-emulator: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    if args.client_ca and not args.tls_cert:
        print("imagestore-emulator: --client-ca needs --tls-cert and --tls-key", file=sys.stderr)
        return 2
    try:
        server, data_dir = create_server(args)
    except ValueError as exc:          # a --fault that is not a valid JSON rule (FaultError is a ValueError)
        print("imagestore-emulator: %s" % exc, file=sys.stderr)
        return 2
    except OSError as exc:
        print("imagestore-emulator: cannot start: %s" % exc, file=sys.stderr)
        return 2
    sys.stdout.write(json.dumps(start_line(server, data_dir)) + "\n")
    sys.stdout.flush()

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0
