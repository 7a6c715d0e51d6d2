# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The upload engine (private): one run of steps for every provider, each edge decided once.

    local files -> what the store holds (and whether it is these bytes) -> decide: nothing / resume / start
      -> check-mode answer -> find or open the session -> transfer what is missing (bounded pool)
      -> source unchanged (and as declared) -> commit -> wait until usable -> verify -> record
      -> result, diff, message
    on failure: one cleanup policy (keep what a re-run can resume; remove what nobody can use)
    everywhere: one deadline (``timeout``)

A protocol (``_protocol.Protocol``) answers the questions each step asks of its API; docs/architecture.md
describes the hooks.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import threading
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.imagestore.upload.plugins.module_utils._errors import (
    BadInput, DeadlineExceeded, ImageStoreError, LocalFileError, SessionLost, SourceChangedError, VerificationError,
)
from ansible_collections.imagestore.upload.plugins.module_utils._protocol import (
    DONE, FILE, INCOMPLETE, KEPT, LEFT, REMOVED, SLICE, Verdict,
)
from ansible_collections.imagestore.upload.plugins.module_utils._ranges import plan, total
from ansible_collections.imagestore.upload.plugins.module_utils._digest_cache import DigestCache
from ansible_collections.imagestore.upload.plugins.module_utils._source import SMALL, Source, check_local, parse_checksum
from ansible_collections.imagestore.upload.plugins.module_utils._transfer import Transfer, Unit
from ansible_collections.imagestore.upload.plugins.module_utils._wait import CLEANUP_GRACE, once

MiB = 1024 * 1024
DEFAULT_CHUNK_SIZE = 16 * MiB
DEFAULT_PARALLEL = 4
#: how many times a session that ends under the upload is started again in one run
SESSION_RESTARTS_MAX = 2
#: small files sent without a session go this many at a time at most
WHOLE_FILE_PARALLEL_MAX = 16


class NullReporter:
    """Where the engine says how far it is (the CLI's progress bar, the module's progress file).

    ``phase(text)``: what the run does now; ``start(total_bytes)``: the bytes to upload; ``held(n)``: bytes of them
    the store already holds (a resumed session), done without being sent; ``advance(n)``: bytes sent (called from
    the transfer's threads; negative when a request failed and takes back what it had counted);
    ``finish(result)``: the outcome.
    """

    def phase(self, text):
        pass

    def start(self, total_bytes, done_bytes=0):
        pass

    def held(self, n):
        pass

    def advance(self, n):
        pass

    def finish(self, result):
        pass


def cleanup_sentence(outcome, session_id):
    """What became of a failed run's session."""
    if outcome == KEPT:
        return ("upload session %s is kept: run again to resume it, or remove it with imagestore.upload.upload_session_absent"
                % session_id)
    if outcome == REMOVED:
        return "upload session %s was removed with what it had received" % session_id
    if outcome == LEFT:
        return "upload session %s belongs to a concurrent run for the same destination and is left to it" % session_id
    return ("upload session %s could not be removed and may still exist: remove it with imagestore.upload.upload_session_absent"
            % session_id)


class Engine:
    """Runs ``image_upload`` (present or absent) for one protocol."""

    def __init__(self, protocol, reporter=None):
        self.p = protocol
        self.ctx = protocol.ctx
        self.params = protocol.ctx.params
        self.deadline = protocol.ctx.deadline
        self.reporter = reporter or NullReporter()
        self.chunk_size = self.params.get("chunk_size") or DEFAULT_CHUNK_SIZE
        self.parallel = self.params.get("parallel") or DEFAULT_PARALLEL
        self.restarts = 0
        self.conflicts = 0
        self.cache = DigestCache(DigestCache.default_path()) if self.params.get("digest_cache", True) else None

    # -- local files --------------------------------------------------------------------------------
    def make_source(self, path, option="src"):
        """Check and open one local file: the one place that decides which files upload."""
        check_local(path, option)
        return Source(path, self.cache, check=self.deadline.check)

    def local_files(self):
        src = self.params["src"]
        kind = check_local(src, "src", directory_ok=self.p.multi_file)
        files = self.p.local_files(src, self.make_source)
        if self.params.get("checksum"):
            if kind == "directory":
                raise BadInput("checksum applies to one file; src %s is a directory (each of its files is digested)" % src)
            algorithm, digest = parse_checksum(self.params["checksum"])
            files[0].source.declared[algorithm] = digest
        for f in files:
            if f.size == 0 and self.p.empty_files == "refuse":
                raise LocalFileError("src: %s is empty (0 bytes); %s cannot hold an empty file" % (f.path, self.p.name))
        return files

    def _whole(self, f):
        """Does this file go by one request without a session?"""
        if f.size == 0 and self.p.empty_files == "whole":
            return True
        return 0 < f.size <= self.p.whole_file_max

    # -- image_upload state=present -------------------------------------------------------------------
    def upload(self):
        try:
            return self._upload()
        finally:
            if self.cache is not None:
                self.cache.flush()

    def _upload(self):
        p = self.p
        self.reporter.phase("looking at the source")
        files = self.local_files()
        dest = p.destination(files)
        self.reporter.phase("looking at the store")
        stored = p.stored(dest, files)
        verdicts = {}
        for f in files:
            held = stored.get(f.name)
            if held is not None or not self._whole(f):
                self.reporter.phase("computing the digests of %s" % f.path)
                f.digests = f.source.identity_digests(p.digests)
            verdicts[f.name] = p.holds(dest, held, f) if held is not None else Verdict(False, "absent")
        force = bool(self.params.get("force"))
        todo = [f for f in files if force or not verdicts[f.name].same]
        result = self._result(dest, files, stored, verdicts, todo)
        if not todo:
            result.update(p.finish(dest, files, False))
            result["msg"] = self._unchanged_message(dest, files, verdicts)
            return result
        if self.ctx.check_mode:
            return self._would(dest, todo, result)
        self.reporter.start(sum(f.size for f in todo))
        groups = [todo] if p.session_scope == "upload" else [[f] for f in todo]
        whole = [g[0] for g in groups if len(g) == 1 and self._whole(g[0])]
        sessions = [g for g in groups if not (len(g) == 1 and self._whole(g[0]))]
        outcomes = {}
        if whole:
            outcomes.update(self._put_whole(dest, whole))
        for group in sessions:
            outcomes.update(self._upload_group(dest, group))
        result.update(p.finish(dest, files, True))
        self._fill(result, dest, files, todo, outcomes)
        self.reporter.finish(result)
        return result

    def _result(self, dest, files, stored, verdicts, todo):
        p = self.p
        single = files[0] if len(files) == 1 else None
        result = {
            "changed": bool(todo), "session_id": None, "size": sum(f.size for f in files), "bytes_sent": 0, "resumed": False,
            "sha256": (single.digests.get("sha256") or single.source.known(("sha256",)).get("sha256")) if single else None,
            "compared": sorted(set(v.compared for v in verdicts.values())) if len(files) > 1 else verdicts[files[0].name].compared,
        }
        result.update(p.result(dest, None))
        before = p.diff_state(dest, stored, files, after=False)
        after = p.diff_state(dest, stored, files, after=True, todo=frozenset(todo)) if todo else before
        result["diff"] = {"before": before, "after": after}
        notes = [v.note for v in verdicts.values() if v.note]
        if notes:
            result["notes"] = notes
        if len(files) > 1:
            todo = set(todo)
            result["files"] = [{"name": f.name, "size": f.size, "changed": f in todo, "bytes_sent": 0, "resumed": False,
                                "session_id": None, "compared": verdicts[f.name].compared,
                                "sha256": f.digests.get("sha256")} for f in files]
        return result

    def _unchanged_message(self, dest, files, verdicts):
        how = sorted(set(v.compared for v in verdicts.values()))
        what = files[0].name if len(files) == 1 else "all %d files" % len(files)
        text = "%s already holds %s (compared by %s); nothing sent (force=true uploads again)" % (
            self.p.where(dest), what, " and ".join(how))
        notes = [v.note for v in verdicts.values() if v.note]
        return text + ("; " + "; ".join(sorted(set(notes))) if notes else "")

    def _would(self, dest, todo, result):
        """The check-mode answer: what a real run would resume or start, and send."""
        p = self.p
        groups = [todo] if p.session_scope == "upload" else [[f] for f in todo]
        would, resumed = 0, []
        for group in groups:
            if len(group) == 1 and self._whole(group[0]):
                would += group[0].size
                continue
            session = p.find_session(dest, p.resume_key(dest, group), group)
            if session is None:
                would += sum(f.size for f in group)
                continue
            if session.state == DONE:       # a concurrent run completed it meanwhile
                continue
            resumed.append(session.id)
            missing = p.missing(session, group)
            would += sum(total(missing.get(f.name, [])) if p.unit != FILE else (f.size if missing.get(f.name) else 0)
                         for f in group)
        result.update(would_send=would, resumed=bool(resumed))
        if len(resumed) == 1 and len(groups) == 1:
            result["session_id"] = resumed[0]
        result["msg"] = "would %s %d of %d bytes to %s" % (
            "resume upload session %s and send" % ", ".join(resumed) if resumed else "send", would,
            sum(f.size for f in todo), p.where(dest))
        return result

    # -- image_upload state=absent ---------------------------------------------------------------------
    def absent(self):
        """Remove what the destination holds (content, its records and sessions); idempotent, check mode, diff."""
        p = self.p
        dest = p.destination(None)
        present = p.present(dest)
        result = {"changed": bool(present), "removed": list(present),
                  "diff": {"before": {"present": list(present)}, "after": {"present": []}}}
        result.update(p.result(dest, None))
        if not present:
            result["msg"] = "%s holds nothing to remove" % p.where(dest)
            return result
        if not self.ctx.check_mode:
            p.remove_content(dest, present)
        result["msg"] = "%s %s from %s" % ("would remove" if self.ctx.check_mode else "removed", ", ".join(present), p.where(dest))
        return result

    # -- sending ----------------------------------------------------------------------------------------
    def _put_whole(self, dest, files):
        """Files that go in one request each (small or empty), several at a time."""
        outcomes = {}

        def one(f):
            self.deadline.check("uploading %s" % f.path)
            if f.size <= SMALL and f.source.kind == "regular":
                f.digests.update(f.source.load(f.source.checked_algorithms()))
            else:
                f.digests.update(f.source.identity_digests(("sha256",)))
            f.source.verify_declared()          # a file sent whole is read first: what is declared is checked before it goes
            sent = self.p.put_whole(dest, f)
            f.source.check_unchanged()
            self.reporter.advance(f.size)
            return f.name, {"bytes_sent": sent, "resumed": False, "session_id": None}

        workers = max(1, min(WHOLE_FILE_PARALLEL_MAX, self.parallel * 2, len(files)))
        if workers == 1:
            for f in files:
                name, outcome = one(f)
                outcomes[name] = outcome
            return outcomes
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for name, outcome in pool.map(one, files):
                outcomes[name] = outcome
        return outcomes

    def _upload_group(self, dest, group):
        """One session's worth of files: find or open it, send what it misses, commit, wait, verify, record."""
        p = self.p
        key = p.resume_key(dest, group)
        session = p.find_session(dest, key, group)
        if session is not None and session.state == DONE:
            return self._done_meanwhile(session, dest, group)
        background = [f.source.digests_in_background(f.source.checked_algorithms())
                      for f in group]
        sent = {}           # file name -> bytes the store accepted from this run
        while True:
            try:
                if session is None:
                    session = p.open_session(dest, key, group)
                    if session.state == DONE:
                        for digests in background:
                            digests.result()
                        return self._done_meanwhile(session, dest, group)
                self.reporter.phase("uploading to %s" % p.where(dest))
                self._transfer(session, dest, group, sent)
                for f, digests in zip(group, background):
                    f.digests.update(digests.result())
                    f.source.check_unchanged()
                    f.source.verify_declared()
                self.reporter.phase("committing")
                once(lambda: p.commit(session, dest, group), lambda: p.landed(session, dest, group), self.deadline,
                     "waiting for the commit of upload session %s to show" % session.id)
                self.reporter.phase("waiting until %s is usable" % p.where(dest))
                p.wait(session, dest, group)
                p.verify(session, dest, group)
                p.record(session, dest, group)
                break
            except SessionLost as exc:
                if self.restarts >= SESSION_RESTARTS_MAX:
                    raise self._failed(session, dest, group, exc)
                self.restarts += 1
                self.ctx.warn("upload session %s of %s ended during the upload (%s) and was started again"
                              % (session.id if session else "?", p.where(dest), exc.reason))
                self._abort_quietly(session, dest, "ended during the upload: %s" % exc.reason)
                session = None
            except Exception as exc:  # pylint: disable=broad-except  # every failure ends or keeps the session explicitly
                for digests in background:
                    try:
                        digests.result()
                    except Exception:  # pylint: disable=broad-except  # the failure that counts is exc
                        pass
                raise self._failed(session, dest, group, self._declared_wrong(group, exc) or exc)
        # resumed: the session the upload ended in existed before this run (found, or a concurrent run's, joined)
        return dict((f.name, {"bytes_sent": sent.get(f.name, 0), "resumed": bool(session.found), "session_id": session.id})
                    for f in group)

    @staticmethod
    def _declared_wrong(group, exc):
        """A store that checks a declared checksum itself (vSphere) refuses the bytes before the engine compares them:
        when the file is not what the user declared, that is the failure to report (a VerificationError). Only digests
        already computed (the background pass the failure path waited for) are compared: a failing run never starts
        another pass over the file."""
        if isinstance(exc, (VerificationError, SourceChangedError, DeadlineExceeded)) or not isinstance(exc, ImageStoreError):
            return None
        for f in group:
            declared = tuple(f.source.declared)
            if declared and len(f.source.cached_digests(declared)) == len(declared):
                try:
                    f.source.verify_declared()
                except VerificationError as wrong:
                    return wrong
        return None

    def _done_meanwhile(self, session, dest, group):
        """find_session or open_session answered a DONE session: a concurrent run completed this upload after this run
        looked at the store. Nothing is sent; what the store holds is verified; the files count as unchanged by this run."""
        self.p.verify(session, dest, group)
        return dict((f.name, {"bytes_sent": 0, "resumed": False, "session_id": session.id, "unchanged": True}) for f in group)

    def _plan(self, session, f, ranges):
        if self.p.unit == FILE:
            return [(0, f.size - 1)] if ranges else []
        if self.p.unit == SLICE:
            return plan(ranges, session.grid, grid=session.grid, size=f.size)
        return plan(ranges, self.chunk_size)

    def _transfer(self, session, dest, group, sent):
        """Send what the session misses; add the bytes accepted per file to ``sent``."""
        p = self.p
        by_name = dict((f.name, f) for f in group)

        asked = []

        def missing():
            units = []
            for name, ranges in sorted(p.missing(session, group).items()):
                f = by_name[name]
                units.extend(Unit(f, s, e) for s, e in self._plan(session, f, ranges))
            if not asked:           # what the session holds already (a resume) counts as done for the progress
                asked.append(True)
                held = sum(f.size for f in group) - sum(u.size for u in units)
                if held > 0:
                    self.reporter.held(held)
            return units

        def send(unit):
            try:
                n = p.send(session, unit.item, unit.start, unit.end)
                with lock:
                    sent[unit.item.name] = sent.get(unit.item.name, 0) + n
                return n
            except ImageStoreError as exc:
                if not isinstance(exc, SourceChangedError) and unit.item.source.changed():
                    raise SourceChangedError("%s changed while it was being uploaded (%s); run again to upload its current "
                                             "content" % (unit.item.path, exc.message))
                raise

        lock = threading.Lock()
        stall = max(30.0, 2.0 * float(self.params.get("request_timeout") or 60))
        transfer = Transfer(missing, send, self.parallel, self.deadline, stall_seconds=stall,
                            on_sent=self.reporter.advance, doing="uploading to %s" % p.where(dest))
        for f in group:
            f.source.tap = transfer.tap
        try:
            transfer.run()
        finally:
            for f in group:
                f.source.tap = None
        self.conflicts += transfer.conflicts

    # -- failures ---------------------------------------------------------------------------------------
    def _keep(self, exc):
        """The cleanup policy: keep what a re-run can resume, remove what nobody can use."""
        if isinstance(exc, (VerificationError, SourceChangedError)) or not isinstance(exc, ImageStoreError):
            return False
        return bool(exc.retryable) and self.p.resumable and self.p.keeps_on_failure(exc)

    def _failed(self, session, dest, group, exc):
        """Apply the cleanup policy to the session of a failed run; return the error to raise (message says what became of it)."""
        if not isinstance(exc, ImageStoreError):
            if isinstance(exc, (IOError, OSError)):
                exc = LocalFileError("local file error: %s" % exc)
            else:
                return exc        # a bug of ours: the runner reports it as such
        if session is None:
            self._destination_keys(exc, dest, None)
            return exc
        note = None
        if not session.owned:
            outcome = LEFT
        else:
            keep = self._keep(exc)
            self.deadline.grace(CLEANUP_GRACE)
            try:
                outcome = self.p.abort(session, dest, exc.message, keep)
            except ImageStoreError as cleanup:
                outcome = INCOMPLETE
                exc.details["cleanup_error"] = cleanup.message
            if isinstance(outcome, tuple):      # (outcome, a sentence on what else the cleanup did)
                outcome, note = outcome
        error = exc.with_message("%s; %s%s" % (exc.message, cleanup_sentence(outcome, session.id), "; " + note if note else ""))
        error.details.update(session_id=session.id, session_cleanup=outcome)
        self._destination_keys(error, dest, session.id)
        return error

    def _destination_keys(self, error, dest, session_id):
        """A failure carries the provider's result keys too (where the destination is), as a success does."""
        try:
            keys = self.p.result(dest, session_id)
        except ImageStoreError:
            return
        for key, value in keys.items():
            error.details.setdefault(key, value)

    def _abort_quietly(self, session, dest, reason):
        if session is None or not session.owned:
            return
        try:
            self.p.abort(session, dest, reason, False)
        except ImageStoreError as exc:
            self.ctx.warn("removing the ended upload session %s failed: %s" % (session.id, exc.message))

    # -- the result ---------------------------------------------------------------------------------------
    def _fill(self, result, dest, files, todo, outcomes):
        p = self.p
        sent = sum(o["bytes_sent"] for o in set_of(outcomes))
        resumed = any(o["resumed"] for o in outcomes.values())
        result.update(bytes_sent=sent, resumed=resumed, chunks_replanned=self.conflicts)
        ids = sorted(set(o["session_id"] for o in outcomes.values() if o["session_id"]))
        if len(ids) == 1 and len(files) == 1:
            result["session_id"] = ids[0]
        elif len(ids) == 1 and p.session_scope == "upload":
            result["session_id"] = ids[0]
        if self.restarts:
            result["session_restarts"] = self.restarts
        if len(files) == 1:
            result["sha256"] = files[0].digests.get("sha256") or result.get("sha256")
        by_name = dict((f.name, f) for f in files)
        for entry in result.get("files") or []:
            outcome = outcomes.get(entry["name"])
            if outcome is not None:
                entry.update(outcome)
                if entry.pop("unchanged", False):
                    entry["changed"] = False
                entry["sha256"] = by_name[entry["name"]].digests.get("sha256")
        result.update(p.result(dest, ids[0] if len(ids) == 1 else None))
        what = todo[0].name if len(todo) == 1 else "%d files" % len(todo)
        if all(o.get("unchanged") for o in outcomes.values()):
            result["changed"] = False
            result["msg"] = "%s already holds %s: a concurrent run uploaded %s meanwhile; nothing sent" % (
                p.where(dest), what, "it" if len(todo) == 1 else "them")
            return
        result["msg"] = "%s %d bytes of %s to %s" % (
            "resumed and sent the missing" if resumed else "uploaded", sent, what, p.where(dest))
        if result.get("notes"):
            result["msg"] += "; " + "; ".join(sorted(set(result["notes"])))


def set_of(outcomes):
    """Each outcome once (files of one session share theirs)."""
    seen, unique = set(), []
    for outcome in outcomes.values():
        if id(outcome) not in seen:
            seen.add(id(outcome))
            unique.append(outcome)
    return unique
