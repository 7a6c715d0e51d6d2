# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The three session modules on the protocol interface (private): one selector resolution, one vocabulary.

A session is named by ``session_id``, or by its destination through the provider's selector options
(Service Fabric ``path``, vSphere ``library`` and ``item``, ZStack ``image_id``); both: refused.
States are the engine's (``_protocol.STATES``); the server's own word is kept as ``raw_state``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.imagestore.upload.plugins.module_utils._errors import BadInput, ImageStoreError
from ansible_collections.imagestore.upload.plugins.module_utils._protocol import DONE, OPEN_STATES, session_record
from ansible_collections.imagestore.upload.plugins.module_utils._ranges import total


class SessionOps:
    def __init__(self, protocol):
        self.p = protocol
        self.params = protocol.ctx.params
        self.check_mode = protocol.ctx.check_mode

    def named(self):
        """How the sessions were named, for messages."""
        if self.params.get("session_id"):
            return "session_id %s" % self.params["session_id"]
        return " and ".join("%s %s" % (o, self.params.get(o)) for o in self.p.selector_group)

    def select(self, verb="looks up"):
        p = self.p
        given = [o for o in p.selector_group if self.params.get(o) not in (None, "")]
        if self.params.get("session_id"):
            if given:
                raise BadInput("give session_id or %s, not both" % " and ".join(p.selector_group))
            return p.session_by_id(self.params["session_id"])
        if len(given) != len(p.selector_group):
            raise BadInput("provider %s %s upload sessions by session_id, or by %s; give %s" % (
                p.name, verb, " and ".join(p.selector_group),
                "one of them" if not given else "the missing %s" % " and ".join(o for o in p.selector_group if o not in given)))
        return p.sessions_at()

    def record(self, session):
        record = session_record(self.p.name, session)
        record.update(self.p.describe(session))
        return record

    # -- upload_session_info ----------------------------------------------------------------------
    def info(self):
        return {"changed": False, "sessions": [self.record(s) for s in self.select()]}

    # -- upload_session_commit --------------------------------------------------------------------
    def commit(self):
        sessions = self.select("commits")
        if not sessions:
            raise ImageStoreError("no upload session for %s on %s (it was committed and forgotten, removed, or it expired)"
                                  % (self.named(), self.p.http.endpoint))
        open_ = [s for s in sessions if s.state in OPEN_STATES]
        if not open_:
            done = [s for s in sessions if s.state == DONE]
            if done:
                record = self.record(done[0])
                return dict(self.p.describe(done[0]), changed=False, session=record, destination=record["destination"],
                            msg="upload session %s was already committed" % done[0].id)
            s = sessions[0]
            raise ImageStoreError("upload session %s is %s (%s): it cannot be committed; run image_upload again to start a new "
                                  "one" % (s.id, s.state, s.raw_state), details={"session": self.record(s)})
        s = open_[0]
        record = self.record(s)
        if s.missing or s.extra.get("incomplete"):
            ranges = ", ".join("%d-%d" % r for r in s.missing)
            raise ImageStoreError("upload session %s cannot be committed: %s; run image_upload again to send %s" % (
                s.id, ("%d bytes are missing (ranges %s)" % (total(s.missing), ranges)) if s.missing else s.extra["incomplete"],
                "them" if s.missing else "the rest"), details={"missing_ranges": record["missing_ranges"], "session": record})
        result = dict(self.p.describe(s), changed=True, session=record, destination=record["destination"])
        if self.check_mode:
            result["msg"] = "would commit upload session %s" % s.id
            return result
        self.p.complete(s)
        result["msg"] = "committed upload session %s" % s.id
        return result

    # -- upload_session_absent --------------------------------------------------------------------
    def absent(self):
        purge = bool(self.params.get("purge"))
        sessions = [s for s in self.select("removes") if self.p.removable(s, purge)]
        removed, extras = [], {}
        for s in sessions:
            if self.check_mode:
                removed.append(s.id)
                continue
            outcome = self.p.remove(s, purge)
            if outcome.pop("removed", False):
                removed.append(s.id)
            for key, values in outcome.items():
                extras.setdefault(key, []).extend(values)
        if removed:
            msg = "%s %d upload session(s): %s" % ("would remove" if self.check_mode else "removed", len(removed), ", ".join(removed))
        else:
            msg = "no upload session to remove for %s" % self.named()
        result = {"changed": bool(removed), "deleted": removed, "msg": msg}
        result.update(extras)
        return result
