# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compressed application packages (private), in the layout sfctl and PowerShell (-CompressPackage) upload and the
cluster unpacks when the application type is provisioned.

Each service named by the application manifest (``ServiceManifestImport/ServiceManifestRef@ServiceManifestName``) is
a folder; each code, config and data package its ``ServiceManifest.xml`` names is a sub-folder that goes up as
``<service>/<package>.zip`` beside the manifest (the folder's content at the zip's root); manifests stay plain and a
zipped folder gets no ``_.dir``. Unlike sfctl's, these archives are byte for byte the same whenever the files are
(sorted entries, fixed dates and modes), so a re-run compares and resumes by content; they are kept, keyed by the
identity of every file in the folder, so a re-run of an unchanged package compresses nothing.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import shutil
import tempfile
import zipfile
from xml.etree import ElementTree

from ansible_collections.imagestore.upload.plugins.module_utils._errors import BadInput

PACKAGE_KINDS = ("CodePackage", "ConfigPackage", "DataPackage")
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
BLOCK = 1024 * 1024


def _elements(path, tag):
    try:
        root = ElementTree.parse(path).getroot()
    except (ElementTree.ParseError, IOError, OSError) as exc:
        raise BadInput("compress: %s is not a readable manifest: %s" % (path, exc))
    return [e for e in root.iter() if e.tag == tag or e.tag.endswith("}" + tag)]


def package_folders(src):
    """(service, package name, folder) of every code/config/data package folder the manifests name."""
    manifest = os.path.join(src, "ApplicationManifest.xml")
    if not os.path.isfile(manifest):
        raise BadInput("compress needs an application package: %s has no ApplicationManifest.xml at its top" % src)
    found = []
    for ref in _elements(manifest, "ServiceManifestRef"):
        service = ref.get("ServiceManifestName") or ""
        service_manifest = os.path.join(src, service, "ServiceManifest.xml")
        if not service or not os.path.isfile(service_manifest):
            raise BadInput("compress: the application manifest names service %r, but %s/ServiceManifest.xml is missing"
                           % (service, service or "?"))
        for kind in PACKAGE_KINDS:
            for element in _elements(service_manifest, kind):
                name = element.get("Name") or ""
                folder = os.path.join(src, service, name)
                if name and os.path.isdir(folder):
                    found.append((service, name, folder))
    return found


def _walk(folder):
    """(relative path, full path, is_dir) below ``folder``, sorted, directories before their content."""
    entries = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        rel = os.path.relpath(root, folder)
        if rel != ".":
            entries.append((rel.replace(os.sep, "/") + "/", root, True))
        for name in sorted(names):
            full = os.path.join(root, name)
            entries.append((os.path.relpath(full, folder).replace(os.sep, "/"), full, False))
    return entries


def _key(entries):
    h = hashlib.sha256()
    for rel, full, is_dir in entries:
        st = os.stat(full)
        h.update(("%s|%d|%d|%d|%d|%d\n" % (rel, is_dir, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)).encode("utf-8"))
    return h.hexdigest()[:32]


def build_zip(folder, target, entries=None):
    """A byte-reproducible zip of the folder's content (streamed: no file is held in memory whole)."""
    entries = _walk(folder) if entries is None else entries
    tmp = target + ".part"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for rel, full, is_dir in entries:
            info = zipfile.ZipInfo(rel, ZIP_DATE)
            info.create_system = 3
            if is_dir:
                info.external_attr = (0o40755 << 16) | 0x10
                archive.writestr(info, b"")
                continue
            info.external_attr = 0o100644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(full, "rb") as source, archive.open(info, "w", force_zip64=os.path.getsize(full) > 2 ** 31) as out:
                shutil.copyfileobj(source, out, BLOCK)
    os.replace(tmp, target)
    return target


class Compressor:
    """Builds (or finds, unchanged) the zips of a package; ``files()`` lists what to upload; ``close()`` tidies up."""

    def __init__(self, src, cache_dir=None):
        self.src = src
        self.own = cache_dir is None
        self.dir = cache_dir or tempfile.mkdtemp(prefix="imagestore-compress-")
        self.built = []

    def files(self, plain_files):
        """(full path, relative path) of the package as uploaded: the plain files outside zipped folders, and the zips."""
        zipped, zips = [], []
        for service, name, folder in package_folders(self.src):
            entries = _walk(folder)
            target = os.path.join(self.dir, "%s-%s-%s.zip" % (_safe(service), _safe(name), _key(entries)))
            if not os.path.isfile(target):
                build_zip(folder, target, entries)
                self.built.append("%s/%s.zip" % (service, name))
                self._forget_older(target)
            zipped.append(os.path.relpath(folder, self.src).replace(os.sep, "/") + "/")
            zips.append((target, "%s/%s.zip" % (service, name)))
        plain = [(full, rel) for full, rel in plain_files if not any(rel.startswith(z) for z in zipped)]
        return sorted(plain + zips, key=lambda pair: pair[1])

    def _forget_older(self, target):
        """Zips of earlier versions of this folder (same service and package name, another key) are not needed any more."""
        prefix = os.path.basename(target).rsplit("-", 1)[0] + "-"
        for name in os.listdir(self.dir):
            full = os.path.join(self.dir, name)
            if name.startswith(prefix) and name.endswith(".zip") and full != target:
                try:
                    os.unlink(full)
                except OSError:
                    pass

    def close(self):
        if self.own:
            shutil.rmtree(self.dir, ignore_errors=True)


def _safe(text):
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)[:60]
