"""Fault injection: rules matched by provider and operation, applied by the core around a request.

A rule (JSON):
    {"provider": "servicefabric", "operation": "chunk", "action": "close_after_bytes", "bytes": 1048576,
     "count": 1, "after": 0, "probability": 1.0}
- ``provider``: a provider name or "*"; ``operation``: the provider's name for the operation (see each
  provider's ``operation()``; e.g. servicefabric: get, get_by_path, chunk, commit, delete_session,
  put_file, content, delete_content) or "*".
- ``action``:
    ``close_after_bytes``  read ``bytes`` of the request body, then close the connection unanswered
    ``status``             answer ``status`` (default 503; ``retry_after`` seconds adds Retry-After; ``code`` the
                           provider's error code, e.g. FABRIC_E_NOT_PRIMARY) without processing the request
    ``status_after``       process the request (it takes effect), then answer ``status`` (default 504) instead of
                           its result: the time-out a gateway answers while the operation completes behind it
    ``delay``              wait ``ms`` milliseconds, then process normally
    ``drop_response``      process the request, then close the connection without the answer
    ``expire``             expire the session the request names (provider hook), then process it
    ``enospc``             process the request on a full disk: its writes fail with ENOSPC once ``bytes`` bytes
                           (default 0) were written, and the provider answers as its real server does
- ``count``: how many times it fires (default 1; 0 = every time); ``after``: let that many matching
  requests through first; ``probability``: chance to fire on a match, drawn from one generator
  seeded with ``seed`` (POST body or --fault-seed), so a run is reproducible.

Control: ``POST /_emulator/faults`` {"rules": [...], "seed": 1} adds rules; ``GET`` lists rules and
what fired; ``DELETE`` clears both.
"""

import random
import threading
import time

ACTIONS = ("close_after_bytes", "status", "status_after", "delay", "drop_response", "expire", "enospc")


class FaultError(ValueError):
    pass


class Faults:
    def __init__(self, seed=0):
        self._lock = threading.Lock()
        self._rules = []
        self._fired = []
        self._next_id = 1
        self._random = random.Random(seed)

    def add(self, rules, seed=None):
        checked = [self._check(rule) for rule in rules]
        with self._lock:
            if seed is not None:
                self._random = random.Random(seed)
            for rule in checked:
                rule["id"] = self._next_id
                rule["matched"] = 0
                rule["fired"] = 0
                self._next_id += 1
                self._rules.append(rule)
        return checked

    @staticmethod
    def _check(rule):
        if not isinstance(rule, dict):
            raise FaultError("a fault rule is a JSON object")
        rule = dict(rule)
        if rule.get("action") not in ACTIONS:
            raise FaultError("action must be one of %s" % ", ".join(ACTIONS))
        rule.setdefault("provider", "*")
        rule.setdefault("operation", "*")
        rule.setdefault("count", 1)
        rule.setdefault("after", 0)
        rule.setdefault("probability", 1.0)
        if rule["action"] in ("close_after_bytes", "enospc"):
            rule.setdefault("bytes", 0)
        if rule["action"] == "status":
            rule.setdefault("status", 503)
        if rule["action"] == "status_after":
            rule.setdefault("status", 504)
        if rule["action"] == "delay":
            rule.setdefault("ms", 1000)
        for key in ("count", "after", "bytes", "status", "ms", "retry_after"):
            if key in rule and (isinstance(rule[key], bool) or not isinstance(rule[key], (int, float))
                                or not 0 <= rule[key] < float("inf")):
                raise FaultError("%s must be a non-negative number" % key)
        if "status" in rule and not 100 <= rule["status"] <= 599:
            raise FaultError("status must be an HTTP status from 100 to 599")
        probability = rule["probability"]
        if isinstance(probability, bool) or not isinstance(probability, (int, float)) or not 0 <= probability <= 1:
            raise FaultError("probability must be a number from 0 to 1")
        for key in ("provider", "operation", "code"):
            if key in rule and not isinstance(rule[key], str):
                raise FaultError("%s must be a string" % key)
        return rule

    def clear(self):
        with self._lock:
            self._rules = []
            self._fired = []

    def state(self):
        with self._lock:
            return {"rules": [dict(r) for r in self._rules], "fired": list(self._fired)}

    def match(self, provider, operation, path):
        """The rule that fires for this request, or None (and the bookkeeping of it)."""
        with self._lock:
            for rule in self._rules:
                if rule["provider"] not in ("*", provider) or rule["operation"] not in ("*", operation):
                    continue
                if rule["count"] and rule["fired"] >= rule["count"]:
                    continue
                rule["matched"] += 1
                if rule["matched"] <= rule["after"]:
                    continue
                if rule["probability"] < 1.0 and self._random.random() >= rule["probability"]:
                    continue
                rule["fired"] += 1
                self._fired.append({"rule": rule["id"], "provider": provider, "operation": operation,
                                    "action": rule["action"], "path": path, "at": time.time()})
                return dict(rule)
        return None
