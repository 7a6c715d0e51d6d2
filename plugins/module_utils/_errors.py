# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one error root of the collection (private).

Every failure a user can see is an ``ImageStoreError``: its ``message`` is the sentence the module
returns as ``msg``; ``status``/``code`` are the server's, ``retryable`` says whether the same run
could succeed later, ``details`` are extra result keys. The engine, the module runner and the
cleanup policy look at these attributes only, never at the subclass, except where a subclass is a
signal between the engine and an adapter (``Conflict``, ``SessionLost``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ImageStoreError(Exception):
    """What failed, in one sentence a user can act on, with HTTP status and provider error code."""

    def __init__(self, message, status=None, code=None, retryable=False, details=None, retry_after=None):
        super(ImageStoreError, self).__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.retryable = retryable
        self.details = dict(details or {})
        #: seconds the server asked to wait before asking again (its Retry-After), if it said
        self.retry_after = retry_after

    def __str__(self):
        return self.message

    def with_message(self, message):
        """The same error with another sentence (status, code, retryable and details kept)."""
        error = type(self).__new__(type(self))
        error.__dict__.update(self.__dict__)
        error.message = message
        error.args = (message,)
        error.details = dict(self.details)
        return error

    def to_result(self):
        """The keys a module adds to fail_json besides msg."""
        result = {}
        if self.status is not None:
            result["status"] = self.status
        if self.code is not None:
            result["error_code"] = self.code
        result.update(self.details)
        return result


def uncertain(exc):
    """Did a call that changes something fail in a way that leaves open whether it ran? (a cut connection, a gateway
    time-out: the operation may have completed behind it)"""
    return isinstance(exc, TransportError) or (isinstance(exc, ApiError) and exc.status == 504)


class BadInput(ImageStoreError):
    """An option value that cannot work: names the option, what was wrong and what is accepted."""


class ApiError(ImageStoreError):
    """The server answered with an error status (or an answer that is not what the API promises)."""


class TransportError(ImageStoreError):
    """No usable answer: connection refused or reset, time-out, TLS failure."""


class DeadlineExceeded(ImageStoreError):
    """The module's ``timeout`` is spent. Always retryable: a re-run resumes."""

    def __init__(self, message, details=None):
        super(DeadlineExceeded, self).__init__(message, retryable=True, details=details)


class LocalFileError(ImageStoreError):
    """The file to upload cannot be read (missing, unreadable, a kind of file that cannot be uploaded)."""


class SourceChangedError(ImageStoreError):
    """The file changed while it was being uploaded: its bytes would not match its digest."""


class VerificationError(ImageStoreError):
    """What the store holds after the upload is not the file: never retryable, never kept."""


class StoreFull(ApiError):
    """The store has no room left for what is being written. A re-run resumes once there is room again; this run does
    not try again (it would only fill the rest of the disk)."""

    def __init__(self, message, status=None, code=None):
        super(StoreFull, self).__init__(message, status=status, code=code, retryable=True)


class Conflict(ImageStoreError):
    """The server's account of what is missing changed under us: re-read it and re-plan (not a failure)."""

    def __init__(self, message, status=None, code=None, wait=0.0):
        super(Conflict, self).__init__(message, status=status, code=code, retryable=True)
        #: seconds to let pass before the next plan (the server is still busy with the unit)
        self.wait = wait


class SessionLost(ImageStoreError):
    """The session ended under the upload (expired, deleted, failed over, canceled): start a new one."""

    def __init__(self, message, reason=None, status=None, code=None):
        super(SessionLost, self).__init__(message, status=status, code=code, retryable=True)
        self.reason = reason or message


class TransferError(ImageStoreError):
    """The transfer cannot finish: the server keeps reporting bytes missing that were sent."""

    def __init__(self, message, details=None):
        super(TransferError, self).__init__(message, retryable=True, details=details)
