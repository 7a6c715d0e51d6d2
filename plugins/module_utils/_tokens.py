# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Token sessions of the APIs that log in (private): vSphere and ZStack share this one helper.

Log in lazily (once, whichever thread asks first), log in again once when a call says the token
expired (and repeat that call: the API did not run it), log out at the end, and never let a token
appear in a message (``scrub``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import threading

from ansible_collections.imagestore.upload.plugins.module_utils._errors import ImageStoreError

MASK = "<session>"


class TokenSession:
    """``login() -> token``; ``logout(token)``; ``expired(exc) -> bool`` says whether an error means "log in again"."""

    def __init__(self, login, logout, expired):
        self._login = login
        self._logout = logout
        self._expired = expired
        self._lock = threading.Lock()
        self.token = None
        self.secrets = set()
        self.logins = 0

    def current(self):
        """The token, logging in first when there is none."""
        with self._lock:
            if self.token is None:
                try:
                    token = self._login()
                except ImageStoreError as exc:
                    raise self.scrub(exc)
                self.secrets.add(token)
                self.token = token
                self.logins += 1
            return self.token

    def call(self, fn):
        """``fn(token)``; when it fails because the token expired, log in again once and repeat it."""
        token = self.current()
        try:
            return fn(token)
        except ImageStoreError as exc:
            if not self._expired(exc):
                raise self.scrub(exc)
        with self._lock:
            if self.token == token:
                self.token = None
        token = self.current()
        try:
            return fn(token)
        except ImageStoreError as exc:
            raise self.scrub(exc)

    def logout(self):
        """End the session (nothing to do when never logged in)."""
        with self._lock:
            token, self.token = self.token, None
        if token is None:
            return
        try:
            self._logout(token)
        except ImageStoreError as exc:
            raise self.scrub(exc)

    def scrub(self, exc):
        """The error with every token of this run replaced by a mask (in its message and its details)."""
        text = exc.message
        for secret in self.secrets:
            if secret and secret in text:
                text = text.replace(secret, MASK)
        if text != exc.message:
            exc = exc.with_message(text)
        for key, value in list(exc.details.items()):
            if isinstance(value, str):
                for secret in self.secrets:
                    if secret and secret in value:
                        exc.details[key] = value = value.replace(secret, MASK)
        return exc
