"""The emulator's shared parts, re-exported under their historical names.

The HTTP core is split by job: ``wire`` (request, response, body readers), ``httpd`` (connections,
body time-out), ``app`` (routing, faults, control API), ``provider`` (the interface of a provider API),
``settings`` (configuration) and ``storage`` (state on disk, the full-disk condition).
"""

from imagestore_emulator.app import App
from imagestore_emulator.httpd import EmulatorServer
from imagestore_emulator.provider import ProviderAPI
from imagestore_emulator.settings import Config
from imagestore_emulator.storage import read_json, write_json_atomic
from imagestore_emulator.wire import COPY_BLOCK, MAX_JSON_BODY, BodyReader, PipelinedDigests, Request, Response

__all__ = ["App", "EmulatorServer", "ProviderAPI", "Config", "read_json", "write_json_atomic", "COPY_BLOCK",
           "MAX_JSON_BODY", "BodyReader", "PipelinedDigests", "Request", "Response"]
