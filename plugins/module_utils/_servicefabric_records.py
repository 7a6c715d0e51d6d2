# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What this collection uploaded to the Service Fabric Image Store, recorded in the store itself (private).

The Image Store keeps no digest and has no download call, so "the destination holds these bytes" can
only be known from a record made when they were uploaded. The record is a set of tokens, one per file:

    token = sha256("<relative path>|<sha256 of the content>|<size>|<FileVersion>|<ModifiedDate>")[:20]

each token tying a content digest to the stored file's version and modification date as the store
reported them right after the commit. A file replaced since (by this collection or any other tool) has
another version and date, so its old token no longer matches: it is uploaded again. Tokens are kept as
the NAMES of empty marker files (the store lists names; it cannot give bytes back), 11 tokens a name,
in one folder per destination:

    .imagestore-upload/records/<sha256 of the destination path>[:24]/<token>-<token>-...

so one listing reads the record of a whole application package. A marker is one whole-file PUT (each
is atomic); markers are added after the content is committed and verified, and the ones holding no
current token are removed, so a run that stops half-way leaves tokens missing (files uploaded again
next time), never a token for bytes the store does not hold.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import uuid

RECORD_ROOT = ".imagestore-upload/records"
TOKEN_LENGTH = 20
TOKENS_PER_MARKER = 11
#: the first 8 hex digits of every upload session id this collection makes (others are never resumed)
SESSION_TAG = "15c0be11"
SESSION_NAMESPACE = uuid.UUID("5b0f3f0e-3a57-4c55-9d33-6b2c6f1d8a11")


def session_id_for(path, size, sha256):
    """The upload session id of ``sha256``/``size`` content going to ``path``: the same on any host holding these bytes."""
    raw = uuid.uuid5(SESSION_NAMESPACE, "%s|%d|%s" % (path.lower(), size, sha256)).hex
    return str(uuid.UUID(SESSION_TAG + raw[8:]))


def ours(session_id):
    """Was this session made by this collection (0.3 and later)?"""
    return str(session_id or "").lower().startswith(SESSION_TAG)


def folder_for(destination):
    """The records folder of a destination (a file path or a package folder path)."""
    return "%s/%s" % (RECORD_ROOT, hashlib.sha256(destination.lower().encode("utf-8")).hexdigest()[:24])


def token(relative, sha256, size, version, modified):
    text = "%s|%s|%d|%s|%s" % (relative.lower(), sha256, size, version, modified)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:TOKEN_LENGTH]


def tokens_of(names):
    """Every token in a records folder's marker names."""
    found = set()
    for name in names:
        found.update(t for t in name.split("-") if len(t) == TOKEN_LENGTH)
    return found


def markers_for(tokens):
    """Marker names holding ``tokens`` (sorted, so an unchanged set gives the same names)."""
    tokens = sorted(tokens)
    return ["-".join(tokens[i:i + TOKENS_PER_MARKER]) for i in range(0, len(tokens), TOKENS_PER_MARKER)]


class Record:
    """The record of one destination: read once, tokens added as files are uploaded, written at the end."""

    def __init__(self, client, destination, put):
        self.client = client
        self.put = put              # put(path, body, size, before): a whole-file PUT never sent twice
        self.destination = destination
        self.folder = folder_for(destination)
        self.names = None
        self.tokens = set()
        self.current = {}           # relative path -> token of what the store holds now (known to this run)

    def load(self):
        listing = self.client.listing(self.folder)
        self.names = sorted(f["path"].rsplit("/", 1)[-1] for f in (listing[0] if listing else []))
        self.tokens = tokens_of(self.names)
        return self

    def holds(self, relative, sha256, stored):
        """Does the record say the stored file (size, version, date) holds content ``sha256``?"""
        if stored is None:
            return False
        t = token(relative, sha256, stored["size"], stored["version"], stored["modified"])
        if t in self.tokens:
            self.current[relative] = t
            return True
        return False

    def note(self, relative, sha256, stored):
        """The file at ``relative`` now holds ``sha256`` (stored: its FileInfo read after the commit)."""
        self.current[relative] = token(relative, sha256, stored["size"], stored["version"], stored["modified"])

    def save(self):
        """Record the current tokens: keep markers whose tokens are all current, add markers for the others, then
        remove the rest (added before removed: a current token is never unrecorded). Returns the markers written."""
        if self.names is None:
            self.load()
        current = set(self.current.values())
        kept = [n for n in self.names if tokens_of([n]) <= current]
        written = markers_for(current - tokens_of(kept))
        for name in written:
            self.put("%s/%s" % (self.folder, name), b"", 0, None)
        for name in self.names:
            if name not in kept:
                self.client.delete_content("%s/%s" % (self.folder, name))
        self.names = sorted(kept + written)
        return written

    def remove(self):
        """Remove the whole record (the content is gone)."""
        self.client.delete_content(self.folder)
