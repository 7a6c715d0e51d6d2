# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Service Fabric application packages (private): the files of a package folder, what the store holds below a
path, and the empty ``_.dir`` marker that says a folder is complete (written per folder, deepest first, last)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.imagestore.upload.plugins.module_utils._servicefabric_client import normalize_path

DIR_MARKER = "_.dir"


def package_files(src, compress=False):
    """(full path, relative path with '/') of every file of a package folder, sorted; ``_.dir`` markers are not files."""
    files = []
    for root, dirs, names in os.walk(src):
        dirs.sort()
        rel = os.path.relpath(root, src)
        folder = "" if rel == "." else rel.replace(os.sep, "/")
        for name in sorted(names):
            if name != DIR_MARKER:
                files.append((os.path.join(root, name), "/".join(p for p in (folder, name) if p)))
    return files


def package_folders(files):
    """Every folder of a package (relative, '' for its root), from its files' relative paths."""
    folders = set([""])
    for f in files:
        parts = f.extra["relative"].split("/")[:-1]
        for i in range(1, len(parts) + 1):
            folders.add("/".join(parts[:i]))
    return folders


def stored_tree(api, path):
    """Every file below ``path`` in the store: lower-cased path -> parsed FileInfo (one listing per folder)."""
    found = {}
    pending = [path]
    while pending:
        listing = api.listing(pending.pop())
        if listing is None:
            continue
        files, folders = listing
        for f in files:
            found[f["path"].lower()] = f
        pending.extend(folders)
    return found


def write_dir_markers(put, path, files, changed, check_mode, tree):
    """The ``_.dir`` marker of every folder, deepest first; when nothing changed, only those missing. Returns their paths.
    ``put(path, body, size, before)``: a whole-file PUT never sent twice."""
    markers = []
    for folder in sorted(package_folders(files), key=lambda f: (-f.count("/") if f else 1, f)):
        marker = "/".join(p for p in (path, folder, DIR_MARKER) if p)
        if not changed and normalize_path(marker).lower() in tree:
            continue
        markers.append(marker)
        if not check_mode:
            put(marker, b"", 0, tree.get(normalize_path(marker).lower()))
    return markers
