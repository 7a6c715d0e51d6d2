"""Argument validation the argument spec cannot express, with the exact messages users see."""

import pytest

from ansible_collections.imagestore.upload.plugins.module_utils._errors import ImageStoreError
from ansible_collections.imagestore.upload.plugins.module_utils._options import parse_size, upload_spec
from ansible_collections.imagestore.upload.plugins.module_utils._options import validate as validate_params
from ansible_collections.imagestore.upload.plugins.module_utils._registry import PROVIDERS
from ansible_collections.imagestore.upload.plugins.module_utils._servicefabric_client import check_session_id, normalize_path

SPEC, OWNERS = upload_spec(PROVIDERS)


def validate(p):
    full = dict((k, v.get("default")) for k, v in SPEC.items())
    full.update(src="/etc/hostname")
    full.update(p)
    validate_params(full, PROVIDERS, OWNERS, "upload")
    p.update(full)


def params(**kw):
    p = {"provider": "servicefabric", "endpoint": "http://127.0.0.1:19080", "chunk_size": "16MiB", "parallel": 4,
         "request_timeout": 60.0, "retries": 5, "timeout": None, "path": "images/a.bin"}
    p.update(kw)
    return p


@pytest.mark.parametrize("text,expected", [("16777216", 16 * 2 ** 20), ("16MiB", 16 * 2 ** 20), ("16MB", 16 * 2 ** 20),
                                           ("512KiB", 512 * 1024), ("1GiB", 2 ** 30), ("1G", 2 ** 30)])
def test_sizes(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("kw,message", [
    ({"chunk_size": "0"}, "chunk_size 0 is out of range: give between 64KiB and 4GiB (default 16MiB)"),
    ({"chunk_size": "99TiB"}, "chunk_size 99TiB is out of range: give between 64KiB and 4GiB (default 16MiB)"),
    ({"chunk_size": "lots"}, "chunk_size 'lots' is not a size: give bytes (16777216) or a size with a unit (16MiB, 512KiB, 1GiB)"),
    ({"parallel": 0}, "parallel must be between 1 and 64, got 0"),
    ({"parallel": 1000}, "parallel must be between 1 and 64, got 1000"),
    ({"endpoint": "cluster:19080"},
     "endpoint 'cluster:19080' is not a URL: give the base URL with its scheme, e.g. https://cluster.example.com:19080"),
    ({"endpoint": "https://u:secret@h"}, "endpoint https://***@h contains a user name or password; give them as the username and "
                                         "password options (or IMAGESTORE_USERNAME and IMAGESTORE_PASSWORD), never inside the URL"),
    ({"checksum": "md5:xyz"}, "checksum 'md5:xyz' is not a checksum: give <algorithm>:<hex digest>, e.g. sha256:" + "0" * 64 +
                              " (algorithms: md5, sha1, sha256, sha512)"),
    ({"request_timeout": 0.0}, "request_timeout must be a positive number of seconds, got 0.0"),
    ({"retries": -1}, "retries must be between 0 and 20, got -1"),
    ({"timeout": -5}, "timeout must be 0 (no limit) or a positive number of seconds, got -5"),
    ({"library": "images"}, "option library: library belongs to provider vsphere; provider servicefabric takes compress, path"),
    ({"backup_storage": "bs"}, "option backup_storage: backup_storage belongs to provider zstack; provider servicefabric takes "
                               "compress, path"),
    ({"path": None}, "provider servicefabric uploads with src, path: path is missing"),
    ({"client_key": "/k.pem"}, "client_key needs client_cert (the certificate that goes with the key)"),
])
def test_bad_input_names_the_option(kw, message):
    with pytest.raises(ImageStoreError) as err:
        validate(params(**kw))
    assert err.value.message == message


def test_good_input_passes_and_sizes_become_bytes():
    p = params()
    validate(p)
    assert p["chunk_size"] == 16 * 2 ** 20


@pytest.mark.parametrize("path,message", [
    ("../etc/passwd", "path '../etc/passwd' contains a '..' segment; give a path inside the image store"),
    ("/abs/file", "path '/abs/file' is absolute; give a path relative to the image store root, e.g. 'images/disk.vhd'"),
    ("C:\\store\\x", "path 'C:\\\\store\\\\x' is absolute; give a path relative to the image store root, e.g. 'images/disk.vhd'"),
    ("a/\x01b", "path 'a/\\x01b' contains control characters; use printable characters only"),
    ("  ", "path must be a non-empty image store relative path such as 'images/disk.vhd'"),
])
def test_unsafe_paths_are_refused(path, message):
    with pytest.raises(ImageStoreError) as err:
        normalize_path(path)
    assert err.value.message == message


def test_paths_are_normalised():
    assert normalize_path("Store\\App\\./x.dll") == "Store/App/x.dll"


@pytest.mark.parametrize("value", ["nope", "1234", "00000000-0000-0000-0000-000000000000"])
def test_bad_session_ids(value):
    with pytest.raises(ImageStoreError) as err:
        check_session_id(value)
    assert "session_id" in err.value.message
