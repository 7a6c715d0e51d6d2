# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The modules' documentation, read the way ansible-doc composes it (the module's DOCUMENTATION, then its doc
fragments), so that ``--help`` says what ``ansible-doc`` says and the two cannot drift.

Nothing here imports Ansible: the module files are parsed (``ast``), not imported; the doc fragments are plain
classes.
"""

import ast
import importlib
import os
import re
import textwrap

import yaml

COLLECTION = "ansible_collections.imagestore.upload"
PREFIX = "imagestore.upload."
#: module -> the command that runs it (module names in the docs become these commands)
COMMANDS = {"image_upload": "upload", "upload_session_info": "info", "upload_session_commit": "commit",
            "upload_session_absent": "absent"}
TITLES = {"connection": "connection", "transfer": "transfer", "servicefabric": "Service Fabric", "vsphere": "vSphere",
          "zstack": "ZStack", "session": "session"}


class ModuleDoc:
    """One module's documentation: ``short``, ``description`` (paragraphs), ``notes``, ``options`` (name -> entry, in
    documentation order), ``groups`` (fragment title -> option names), ``attributes``."""

    def __init__(self, module):
        self.module = module
        doc = yaml.safe_load(_module_documentation(module))
        self.short = doc.get("short_description") or ""
        self.description = _paragraphs(doc.get("description"))
        self.notes = _paragraphs(doc.get("notes"))
        self.options = {}
        self.order = []
        self.groups = []
        self.attributes = dict(doc.get("attributes") or {})
        self._add("options of %s" % module, doc.get("options") or {})
        for name in doc.get("extends_documentation_fragment") or []:
            fragment_name = name[len(PREFIX):] if name.startswith(PREFIX) else name
            fragment = _fragment(fragment_name)
            base = fragment_name.split(".")[0]
            self._add(TITLES.get(base, base), fragment.get("options") or {})
            self.notes.extend(_paragraphs(fragment.get("notes")))
            self.attributes.update(fragment.get("attributes") or {})

    def _add(self, title, options):
        names = []
        for option, entry in options.items():
            if option not in self.options:
                self.order.append(option)
                names.append(option)
            self.options[option] = entry
        if names:
            for existing, members in self.groups:
                if existing == title:
                    members.extend(names)
                    return
            self.groups.append((title, names))

    def text(self, option, options=None):
        """The option's description, paragraphs joined by newlines (markup turned into plain words)."""
        entry = self.options.get(option) or {}
        return "\n".join(render(p, options) for p in _paragraphs(entry.get("description")))


def _module_documentation(module):
    path = os.path.join(_plugins_dir(), "modules", module + ".py")
    with open(path) as fh:
        tree = ast.parse(fh.read(), path)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "DOCUMENTATION" for t in node.targets):
            return ast.literal_eval(node.value)
    raise LookupError("%s has no DOCUMENTATION" % path)


def _plugins_dir():
    fragments = importlib.import_module(COLLECTION + ".plugins.doc_fragments.connection")
    return os.path.dirname(os.path.dirname(os.path.abspath(fragments.__file__)))


def _fragment(name):
    module, _, attribute = name.partition(".")
    cls = importlib.import_module("%s.plugins.doc_fragments.%s" % (COLLECTION, module)).ModuleDocFragment
    return yaml.safe_load(getattr(cls, attribute or "DOCUMENTATION")) or {}


def _paragraphs(value):
    if not value:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def flag(option):
    return "--" + option.replace("_", "-")


def _markup(match, options):
    kind, body = match.group(1), match.group(2)
    if kind == "O":
        if body.startswith("ignore:"):
            return body[len("ignore:"):]
        name, eq, value = body.partition("=")
        if options is not None and name not in options:
            return body
        if eq and value in ("true", "false"):
            return flag(name) if value == "true" else flag("no_" + name)
        return "%s %s" % (flag(name), value) if eq else flag(name)
    if kind == "M":
        short = body[len(PREFIX):] if body.startswith(PREFIX) else None
        if short in COMMANDS:
            return "imagestore-upload %s" % COMMANDS[short]
        return body
    if kind == "E":
        return "$" + body
    if kind == "L":
        text, _, url = body.partition(",")
        return "%s (%s)" % (text.strip(), url.strip())
    if kind == "RV":
        return body.split("=")[0] if "=" not in body else body
    if kind == "P":
        return body.split("#")[0]
    return body           # V, C, I, B, U


MARKUP = re.compile(r"\b(RV|[OVCEMILBUP])\(([^()]*)\)")


def render(text, options=None):
    """Ansible's doc markup as plain words for a terminal: O(chunk_size) -> --chunk-size, E(X) -> $X, M(...) -> the
    command that runs that module, V()/C() -> their text."""
    text = re.sub(r"\s+", " ", str(text)).strip()
    return MARKUP.sub(lambda m: _markup(m, options), text)


def wrap(paragraphs, width=100, indent=""):
    return "\n\n".join(textwrap.fill(p, width, initial_indent=indent, subsequent_indent=indent) for p in paragraphs)


def replace_module_names(message):
    """Messages of the collection name its modules (imagestore.upload.upload_session_absent); at the command line the
    command that does the same is meant."""
    for module, command in COMMANDS.items():
        message = message.replace(PREFIX + module, "imagestore-upload " + command)
    return message.replace("(force=true uploads again)", "(--force uploads again)").replace(" on the host running the module", "")
