# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""vSphere Content Library formats (private): names, item types, OVF descriptors, OVA archives, checksums.

An ``.ovf`` ``src`` is uploaded with the files its ``References`` name (``ovf:href``, in the same
folder) and ``<name>.mf`` when present; an ``.ova`` goes as one file, which the server unpacks, so its
checksum is never declared and it counts as stored when every member is in the item with its size.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import os
import re
import tarfile
from xml.etree import ElementTree

from ansible_collections.imagestore.upload.plugins.module_utils._errors import BadInput, LocalFileError
from ansible_collections.imagestore.upload.plugins.module_utils._protocol import LocalFile

ITEM_TYPES = {".iso": "iso", ".ovf": "ovf", ".ova": "ovf"}
#: the server's checksum algorithm names -> hashlib's
ALGORITHMS = {"SHA1": "sha1", "MD5": "md5", "SHA256": "sha256", "SHA512": "sha512"}
OVA = "ova"
_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def check_name(value, option):
    """A library or item name: non-empty, printable."""
    text = "" if value is None else str(value)
    if not text.strip():
        raise BadInput("%s must be a non-empty name" % option)
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise BadInput("%s %r contains control characters; use printable characters only" % (option, text))
    return text


def check_file_name(value, option="file_name"):
    """A file name inside a library item: a plain name, no separators, no '..'."""
    text = check_name(value, option)
    if "/" in text or "\\" in text or text in (".", ".."):
        raise BadInput("%s %r must be a plain file name without '/', '\\' or '..', e.g. 'disk.iso'" % (option, text))
    return text


def check_session_id(value):
    if not _ID.match(str(value)):
        raise BadInput("session_id %r is not a valid vSphere update session id: use the id image_upload or upload_session_info "
                       "returned (letters, digits, '.', '_', ':' and '-')" % value)
    return str(value)


def looks_like_id(value):
    return bool(_ID.match(str(value)))


def item_type(path):
    """The library item type for a file: iso, ovf, or file."""
    return ITEM_TYPES.get(os.path.splitext(path)[1].lower(), "file")


def as_int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def message_text(message):
    """The text of a LocalizableMessage (or of whatever the server put there)."""
    if isinstance(message, dict):
        return message.get("default_message") or message.get("id") or ""
    return "" if message is None else str(message)


def parse_time(value):
    """Seconds since the epoch of an ISO 8601 date_time in UTC (any fraction), or None."""
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]00:?00)?$", str(value or ""))
    if not match:
        return None
    moment = datetime.datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S")
    return (moment - datetime.datetime(1970, 1, 1)).total_seconds() + float(match.group(2) or 0)


def reported_digests(entry):
    """{hashlib name: lower-case hex} of the checksum a server reports for a file ({} when none)."""
    info = (entry or {}).get("checksum_info") or {}
    if not info.get("checksum"):
        return {}
    algorithm = ALGORITHMS.get(str(info.get("algorithm") or "SHA1").upper())
    return {algorithm: str(info["checksum"]).lower()} if algorithm else {}


def declared_checksum(f):
    """The ``checksum_info`` file add declares for ``f``: the digest the user gave (``checksum: sha256:..``; nothing is
    read before the first byte), else SHA-1 (what every vCenter verifies); none for an OVA, which the server unpacks."""
    if f.role == OVA:
        return None
    for name in ("SHA256", "SHA512", "SHA1", "MD5"):
        if ALGORITHMS[name] in f.source.declared:
            return {"algorithm": name, "checksum": f.source.declared[ALGORITHMS[name]]}
    return {"algorithm": "SHA1", "checksum": f.digests["sha1"]}


def same_content(entry, f, digest):
    """Does ``entry`` (an item or session file) hold ``f``'s bytes? Same size, and the same checksum where the
    server reports one (``digest(algorithm)`` gives this file's); where it reports none, the size decides."""
    if entry is None or as_int(entry.get("size")) != f.size:
        return False
    reported = reported_digests(entry)
    if not reported:
        return True
    algorithm, value = next(iter(reported.items()))
    return digest(algorithm) == value


def ovf_references(path):
    """File names an OVF descriptor references (``References/File/@href``), in order."""
    try:
        root = ElementTree.parse(path).getroot()
    except (ElementTree.ParseError, IOError, OSError) as exc:
        raise LocalFileError("src %s is not a readable OVF descriptor: %s" % (path, exc))
    names = []
    for element in root.iter():
        if not element.tag.endswith("}File") and element.tag != "File":
            continue
        for key, value in element.attrib.items():
            if key == "href" or key.endswith("}href"):
                names.append(value)
    return names


def ova_members(path):
    """(name, size) of the regular files in an OVA (a tar archive), read from its headers only."""
    try:
        with tarfile.open(path, "r:") as archive:
            return [(m.name, m.size) for m in archive.getmembers() if m.isfile()]
    except (tarfile.TarError, IOError, OSError):
        return []


def ova_unpacked(entries, path):
    """Does a library item (``entries``: name -> file entry) hold every member of the OVA at ``path`` with its size?"""
    members = ova_members(path)
    return bool(members) and all(as_int((entries.get(n) or {}).get("size")) == size for n, size in members)


def local_files(src, file_name, make_source):
    """The files of ``src``: one file, or an OVF descriptor followed by the files it references (then its manifest)."""
    if os.path.isdir(src):
        raise LocalFileError("src: %s is a directory; this provider uploads one file (an image, an OVA, or an OVF descriptor "
                             "with the files it references)" % src)
    name = check_file_name(file_name or os.path.basename(src))
    extension = os.path.splitext(src)[1].lower()
    files = [LocalFile(name, make_source(src, "src"), role=OVA if extension == ".ova" else None)]
    if extension != ".ovf":
        return files
    folder = os.path.dirname(os.path.abspath(src))
    names = ovf_references(src)
    manifest = os.path.splitext(os.path.basename(src))[0] + ".mf"
    if os.path.isfile(os.path.join(folder, manifest)) and manifest not in names:
        names.append(manifest)
    for ref in names:
        if not ref or "://" in ref or "/" in ref or "\\" in ref or ref in (".", ".."):
            raise LocalFileError("src %s references %r: only files in the same folder as the descriptor can be uploaded"
                                 % (src, ref))
        if ref in [f.name for f in files]:
            raise LocalFileError("src %s references %r twice (or names itself); each file is uploaded once" % (src, ref))
        path = os.path.join(folder, ref)
        files.append(LocalFile(ref, make_source(path, "%s (referenced by %s)" % (ref, os.path.basename(src)))))
    return files
