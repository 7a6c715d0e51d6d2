# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The command line's arguments, derived from the modules' option specs (``_options``) and documented by the modules'
documentation (``docs.ModuleDoc``): the same options, defaults, choices and IMAGESTORE_* environment variables.

The password is the one exception: it is never taken on the command line (it would show in ``ps`` and in shell
history), but from $IMAGESTORE_PASSWORD, ``--password-file``, or a prompt on a terminal.
"""

import argparse
import getpass
import os
import textwrap

from ansible_collections.imagestore.upload.plugins.module_utils._options import session_spec, upload_spec

from imagestore_cli.docs import ModuleDoc, flag, render, wrap

#: command -> (the operation the module runner calls it, the module it stands for)
COMMANDS = {
    "upload": ("upload", "image_upload"),
    "info": ("sessions", "upload_session_info"),
    "commit": ("commit", "upload_session_commit"),
    "absent": ("absent", "upload_session_absent"),
}

EXIT_CODES = (
    (0, "done, or nothing to do (the store already holds the content; also every --check run that could answer)"),
    (1, "failed: the store or the network; the message says what became of the upload session"),
    (2, "bad usage or input: an option, the source file, a password that cannot be had"),
    (3, "timed out (--timeout) or interrupted (Ctrl-C, SIGTERM): what the store received is kept; run the same "
        "command again to resume"),
    (4, "verification failed: the stored content is not the file, the file is not the --checksum given, or it changed "
        "while it was being uploaded"),
)

EXAMPLES = {
    "upload": """\
  imagestore-upload upload --provider servicefabric --endpoint https://cluster.example.com:19080 \\
      --client-cert /etc/ssl/private/sf-admin.pem --src disk.vhd --path images/disk.vhd

  export IMAGESTORE_PROVIDER=zstack IMAGESTORE_ENDPOINT=http://zstack.example.com:8080 IMAGESTORE_USERNAME=admin
  imagestore-upload upload --src centos9.qcow2 --name centos9 --backup-storage bs      # asks for the password

  imagestore-upload upload --provider vsphere --endpoint https://vcenter.example.com --username svc@vsphere.local \\
      --password-file ~/.vcenter-password --src ubuntu.iso --library images --item ubuntu --json""",
    "info": """\
  imagestore-upload info --provider servicefabric --endpoint http://localhost:19080 --path images/disk.vhd""",
    "commit": """\
  imagestore-upload commit --provider servicefabric --endpoint http://localhost:19080 --path images/disk.vhd""",
    "absent": """\
  imagestore-upload absent --provider zstack --endpoint http://zstack.example.com:8080 --username admin --image-id 4f2d...""",
}

PASSWORD_ENV = "IMAGESTORE_PASSWORD"


class UsageError(Exception):
    """A bad option value or a missing one: exit code 2."""


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the paragraphs of an option's help (one per line of its text), wraps each."""

    def _split_lines(self, text, width):
        lines = []
        for paragraph in text.splitlines():
            lines.extend(textwrap.wrap(paragraph, width) or [""])
        return lines


def spec_of(operation, registry):
    if operation == "upload":
        return upload_spec(registry)
    return session_spec(registry, absent=operation == "absent")


def exit_codes_text():
    return "exit status:\n" + "\n".join(textwrap.fill("%d  %s" % (code, text), 100, subsequent_indent="   ")
                                        for code, text in EXIT_CODES)


def _integer(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a whole number" % text)


def _number(text):
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a number" % text)


def to_bool(text, where):
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on", "y", "t"):
        return True
    if value in ("0", "false", "no", "off", "n", "f", ""):
        return False
    raise UsageError("%s: %r is not a boolean (true/false, yes/no, 1/0)" % (where, text))


def _help(doc, option, entry, names):
    text = doc.text(option, names) or "(not documented)"
    default = entry.get("default")
    if entry.get("type") == "bool":
        text += "\n[default: %s]" % ("true" if default else "false")
    elif default not in (None, ""):
        text += "\n[default: %s]" % default
    return text.replace("%", "%%")


def _add_option(group, doc, option, entry, names):
    kind = entry.get("type", "str")
    kwargs = dict(dest=option, default=None, help=_help(doc, option, entry, names))
    if kind == "bool":
        group.add_argument(flag(option), action=argparse.BooleanOptionalAction, **kwargs)
        return
    kwargs["type"] = {"int": _integer, "float": _number}.get(kind, str)
    kwargs["metavar"] = {"int": "N", "float": "SECONDS", "path": "PATH"}.get(kind, option.upper())
    if entry.get("choices"):
        kwargs["choices"] = entry["choices"]
        kwargs["metavar"] = "{%s}" % ",".join(entry["choices"])
    group.add_argument(flag(option), **kwargs)


def add_command(subparsers, command, registry):
    operation, module = COMMANDS[command]
    doc = ModuleDoc(module)
    spec, _ = spec_of(operation, registry)
    names = set(spec)
    description = render(doc.short, names) + ".\n\n" + wrap([render(p, names) for p in doc.description])
    epilog = "\n\n".join(filter(None, [
        "notes:\n" + wrap([render(p, names) for p in doc.notes], indent="  ") if doc.notes else "",
        "examples:\n" + EXAMPLES[command],
        exit_codes_text(),
    ]))
    parser = subparsers.add_parser(command, help=render(doc.short, names), description=description, epilog=epilog,
                                   formatter_class=Formatter, usage="%(prog)s [options]")
    placed = set()
    for title, members in doc.groups:
        group = parser.add_argument_group("%s options" % title)
        for option in members:
            if option in spec and option not in placed:
                placed.add(option)
                if option == "password":
                    _password_options(group, doc, names)
                else:
                    _add_option(group, doc, option, spec[option], names)
    rest = [o for o in spec if o not in placed]
    if rest:
        group = parser.add_argument_group("other options")
        for option in rest:
            _add_option(group, doc, option, spec[option], names)
    own = parser.add_argument_group("command line")
    check = (doc.attributes.get("check_mode") or {}).get("description")
    own.add_argument("--check", action="store_true", help=("Check mode. %s" % render(check, names)) if check else "Check mode.")
    if command == "upload":
        diff = (doc.attributes.get("diff_mode") or {}).get("description")
        own.add_argument("--diff", action="store_true", help="Diff mode. %s" % render(diff, names) if diff else "Diff mode.")
    own.add_argument("--json", action="store_true", help="Print the result as the module returns it (JSON) on stdout.")
    own.add_argument("--quiet", "-q", action="store_true",
                     help="No progress and no message; errors still go to stderr, --json still prints its result.")
    return parser


def _password_options(group, doc, names):
    group.add_argument("--password-file", metavar="PATH", default=None, help=(
        "File whose first line is the password. The password is never taken on the command line: it comes from "
        "$%s, from this file, or from a prompt when stdin is a terminal and --username is given.\n%s"
        % (PASSWORD_ENV, doc.text("password", names))).replace("%", "%%"))
    group.add_argument("--password", dest="password_given", default=None, help=argparse.SUPPRESS)


def build_parser(registry, version):
    upload = ModuleDoc("image_upload")
    parser = argparse.ArgumentParser(
        prog="imagestore-upload", formatter_class=Formatter,
        description=wrap([
            render(upload.short) + ", on the same engine as the Ansible collection imagestore.upload: the same options, "
            "IMAGESTORE_* environment variables, resume and idempotence. A progress bar with rate and time left on a "
            "terminal, a line every --progress-interval seconds otherwise.",
            "Run 'imagestore-upload COMMAND --help' for the options of a command."]),
        epilog=exit_codes_text())
    parser.add_argument("--version", action="version", version="%(prog)s " + version)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    subparsers.required = True
    for command in COMMANDS:
        add_command(subparsers, command, registry)
    return parser


def params_from(args, spec, environ):
    """The module parameters of a parsed command line: given values, else the environment fallback, else the default."""
    params = {}
    for option, entry in spec.items():
        if option == "password":
            continue
        value = getattr(args, option, None)
        if value is None:
            value = _from_environment(option, entry, environ)
        if value is None:
            value = entry.get("default")
        if value is not None and entry.get("type") == "path":
            value = os.path.expanduser(os.path.expandvars(str(value)))
        if entry.get("required") and value in (None, ""):
            names = (entry.get("fallback") or (None, []))[1]
            raise UsageError("%s is required%s" % (flag(option), " (or set %s)" % " or ".join("$" + n for n in names)
                                                   if names else ""))
        params[option] = value
    return params


def _from_environment(option, entry, environ):
    fallback = entry.get("fallback")
    if not (isinstance(fallback, tuple) and fallback[0] == "env"):
        return None
    for name in fallback[1]:
        if name in environ:
            text, where = environ[name], "%s (from $%s)" % (flag(option), name)
            kind = entry.get("type", "str")
            if kind == "bool":
                return to_bool(text, where)
            if kind in ("int", "float"):
                try:
                    return int(text) if kind == "int" else float(text)
                except ValueError:
                    raise UsageError("%s: %r is not a number" % (where, text))
            if entry.get("choices") and text not in entry["choices"]:
                raise UsageError("%s: %r is not one of %s" % (where, text, ", ".join(entry["choices"])))
            return text
    return None


def password(args, params, environ, stdin, prompt=getpass.getpass):
    """The password: $IMAGESTORE_PASSWORD, --password-file, or a prompt on a terminal (when a user is given)."""
    if getattr(args, "password_given", None) is not None:
        raise UsageError("the password is never taken on the command line (it would show in ps and in shell history): "
                         "set $%s, give --password-file, or let imagestore-upload ask for it on a terminal" % PASSWORD_ENV)
    path = getattr(args, "password_file", None)
    if path:
        try:
            with open(os.path.expanduser(path)) as fh:
                return fh.readline().rstrip("\r\n")
        except (IOError, OSError) as exc:
            raise UsageError("--password-file %s cannot be read: %s" % (path, exc.strerror or exc))
    if environ.get(PASSWORD_ENV):
        return environ[PASSWORD_ENV]
    if params.get("username") and stdin is not None and stdin.isatty():
        try:
            return prompt("Password of %s at %s: " % (params["username"], params.get("endpoint")))
        except EOFError:
            raise UsageError("no password given")
    return None
