"""Bad input across the four modules and three providers: each case fails with a message naming the
option or the cause and what is accepted, with no traceback, and nothing changes on the server.

All cases run as tasks of one ansible-playbook run (the table is long; one process start for all).
"""

import json
import re

import pytest

from tests.conftest import assert_no_traceback

GUID = "4a2340e8-d8d8-497c-95fe-cdaa1052f33b"
SF = {"provider": "servicefabric", "endpoint": "@URL@"}
ZS = {"provider": "zstack", "endpoint": "@URL@", "username": "@ZUSER@", "password": "@ZPASS@"}
VS = {"provider": "vsphere", "endpoint": "@URL@", "username": "@VUSER@", "password": "@VPASS@"}

# (case id, module, args, the message the user sees: exact, or "startswith:" / "contains:" a part, or "regex:" for
# the messages of Ansible's own argument checks)
CASES = [
    # -- Service Fabric ----------------------------------------------------------------------------
    ("sf-src-missing", "image_upload", dict(SF, src="/nonexistent/disk.img", path="bad/x.img"),
     "src: /nonexistent/disk.img does not exist on the host running the module"),
    ("sf-path-missing", "image_upload", dict(SF, src="@FILE@"), "provider servicefabric uploads with src, path: path is missing"),
    ("sf-vsphere-destination", "image_upload", dict(SF, src="@FILE@", library="images", item="disk"),
     "options item, library: item belongs to provider vsphere; library belongs to provider vsphere; provider servicefabric "
     "takes compress, path"),
    ("sf-endpoint-userinfo", "image_upload", dict(SF, endpoint="http://admin:Hunter2-Secret@127.0.0.1:9", src="@FILE@", path="x"),
     "endpoint http://***@127.0.0.1:9 contains a user name or password; give them as the username and password options (or "
     "IMAGESTORE_USERNAME and IMAGESTORE_PASSWORD), never inside the URL"),
    ("sf-checksum-format", "image_upload", dict(SF, src="@FILE@", path="bad/x.img", checksum="sha256:abc"),
     "startswith:checksum 'sha256:abc' is not a checksum: give <algorithm>:<hex digest>, e.g. sha256:"),
    ("sf-compress-file", "image_upload", dict(SF, src="@FILE@", path="bad/x.img", compress=True),
     "compress applies to an application package folder; src @FILE@ is a file"),
    ("sf-src-fifo", "image_upload", dict(SF, src="@FIFO@", path="bad/x.img"),
     "src: @FIFO@ is a FIFO (named pipe); upload a regular file or a block device (whose whole size is sent)"),
    ("sf-src-chardev", "image_upload", dict(SF, src="/dev/zero", path="bad/x.img"),
     "src: /dev/zero is a character device; upload a regular file or a block device (whose whole size is sent)"),
    ("sf-path-dotdot", "image_upload", dict(SF, src="@FILE@", path="a/../../etc"),
     "path 'a/../../etc' contains a '..' segment; give a path inside the image store"),
    ("sf-path-absolute", "image_upload", dict(SF, src="@FILE@", path="/etc/passwd"),
     "path '/etc/passwd' is absolute; give a path relative to the image store root, e.g. 'images/disk.vhd'"),
    ("sf-path-control", "image_upload", dict(SF, src="@FILE@", path="a\x07b"),
     "path 'a\\x07b' contains control characters; use printable characters only"),
    ("sf-chunk-zero", "image_upload", dict(SF, src="@FILE@", path="bad/x.img", chunk_size="0"),
     "chunk_size 0 is out of range: give between 64KiB and 4GiB (default 16MiB)"),
    ("sf-chunk-absurd", "image_upload", dict(SF, src="@FILE@", path="bad/x.img", chunk_size="64TiB"),
     "chunk_size 64TiB is out of range: give between 64KiB and 4GiB (default 16MiB)"),
    ("sf-chunk-word", "image_upload", dict(SF, src="@FILE@", path="bad/x.img", chunk_size="huge"),
     "chunk_size 'huge' is not a size: give bytes (16777216) or a size with a unit (16MiB, 512KiB, 1GiB)"),
    ("sf-parallel-zero", "image_upload", dict(SF, src="@FILE@", path="bad/x.img", parallel=0),
     "parallel must be between 1 and 64, got 0"),
    ("sf-parallel-type", "image_upload", dict(SF, src="@FILE@", path="bad/x.img", parallel="four"),
     "regex:argument 'parallel' is of type (<class 'str'>|str) and we were unable to convert to int"),
    ("sf-force-type", "image_upload", dict(SF, src="@FILE@", path="bad/x.img", force="maybe"),
     "regex:argument 'force' is of type (<class 'str'>|str) and we were unable to convert to bool"),
    ("sf-provider-unknown", "image_upload", dict(SF, provider="azure", src="@FILE@", path="bad/x.img"),
     "value of provider must be one of: servicefabric, vsphere, zstack, got: azure"),
    ("sf-endpoint-not-url", "image_upload", dict(SF, endpoint="cluster:19080", src="@FILE@", path="bad/x.img"),
     "endpoint 'cluster:19080' is not a URL: give the base URL with its scheme, e.g. https://cluster.example.com:19080"),
    ("sf-endpoint-unreachable", "image_upload", dict(SF, endpoint="http://127.0.0.1:9", src="@FILE@", path="bad/x.img", retries=0),
     "get image store content of bad/x.img failed after 1 attempt: cannot connect to http://127.0.0.1:9: connection refused "
     "(is the endpoint right and the service running?)"),
    ("sf-foreign-option", "image_upload", dict(SF, src="@FILE@", path="bad/x.img", library="images"),
     "option library: library belongs to provider vsphere; provider servicefabric takes compress, path"),
    ("sf-request-timeout", "image_upload", dict(SF, src="@FILE@", path="bad/x.img", request_timeout=0),
     "request_timeout must be a positive number of seconds, got 0.0"),
    ("sf-retries", "image_upload", dict(SF, src="@FILE@", path="bad/x.img", retries=99), "retries must be between 0 and 20, got 99"),
    ("sf-timeout", "image_upload", dict(SF, src="@FILE@", path="bad/x.img", timeout=-1),
     "timeout must be 0 (no limit) or a positive number of seconds, got -1"),
    ("sf-key-without-cert", "image_upload", dict(SF, src="@FILE@", path="bad/x.img", client_key="@FILE@"),
     "client_key needs client_cert (the certificate that goes with the key)"),
    ("sf-info-bad-id", "upload_session_info", dict(SF, session_id="12345"),
     "session_id '12345' is not a valid upload session id: Service Fabric session ids are GUIDs such as "
     "'4a2340e8-d8d8-497c-95fe-cdaa1052f33b'"),
    ("sf-info-nothing", "upload_session_info", dict(SF),
     "provider servicefabric looks up upload sessions by session_id, or by path; give one of them"),
    ("sf-info-both", "upload_session_info", dict(SF, session_id=GUID, path="a"), "give session_id or path, not both"),
    ("sf-commit-bad-id", "upload_session_commit", dict(SF, session_id="zero"),
     "startswith:session_id 'zero' is not a valid upload session id"),
    ("sf-commit-zero-id", "upload_session_commit", dict(SF, session_id="00000000-0000-0000-0000-000000000000"),
     "session_id must not be the all-zero GUID"),
    ("sf-commit-unknown", "upload_session_commit", dict(SF, session_id=GUID),
     "no upload session for session_id %s on @URL@ (it was committed and forgotten, removed, or it expired)" % GUID),
    ("sf-absent-bad-id", "upload_session_absent", dict(SF, session_id="x"), "startswith:session_id 'x' is not a valid upload session id"),
    ("sf-absent-nothing", "upload_session_absent", dict(SF),
     "provider servicefabric removes upload sessions by session_id, or by path; give one of them"),
    # -- ZStack ------------------------------------------------------------------------------------
    ("zs-name-missing", "image_upload", dict(ZS, src="@FILE@", backup_storage="bs"),
     "provider zstack uploads with src, name, backup_storage: name is missing"),
    ("zs-bs-missing", "image_upload", dict(ZS, src="@FILE@", name="n"),
     "provider zstack uploads with src, name, backup_storage: backup_storage is missing"),
    ("zs-bs-unknown", "image_upload", dict(ZS, src="@FILE@", name="n", backup_storage="nope"),
     "backup_storage 'nope' is not a backup storage of this ZStack: give the name or uuid of one of: bs"),
    ("zs-wrong-password", "image_upload", dict(ZS, password="Not-The-Password-7", src="@FILE@", name="n", backup_storage="bs"),
     "login to ZStack at @URL@ as admin failed (ID.1000 wrong account name or password): check username and password"),
    ("zs-no-username", "image_upload", dict(ZS, username=None, src="@FILE@", name="n", backup_storage="bs"),
     "provider zstack needs username and password (a ZStack account allowed to add images)"),
    ("zs-src-directory", "image_upload", dict(ZS, src="@DIR@", name="n", backup_storage="bs"),
     "src: @DIR@ is a directory; this provider uploads one file (give the image file)"),
    ("zs-media-type", "image_upload", dict(ZS, src="@FILE@", name="n", backup_storage="bs", media_type="Floppy"),
     "value of media_type must be one of: RootVolumeTemplate, ISO, DataVolumeTemplate, got: Floppy"),
    ("zs-platform", "image_upload", dict(ZS, src="@FILE@", name="n", backup_storage="bs", platform="Amiga"),
     "value of platform must be one of: Linux, Windows, Other, Paravirtualization, WindowsVirtio, got: Amiga"),
    ("zs-image-id-chars", "image_upload", dict(ZS, src="@FILE@", name="n", backup_storage="bs", image_id="a b/c"),
     "image_id 'a b/c' is not usable as a ZStack upload id: give 1 to 255 letters, digits, '.', '_' or '-' (the default, "
     "the MD5 of the file, is one)"),
    ("zs-foreign-option", "image_upload", dict(ZS, src="@FILE@", name="n", backup_storage="bs", path="x"),
     "option path: path belongs to provider servicefabric; provider zstack takes backup_storage, format, image_id, media_type, name, "
     "platform, replace"),
    ("zs-info-nothing", "upload_session_info", dict(ZS), "provider zstack looks up upload sessions by session_id, or by image_id; give one of them"),
    ("zs-commit-unknown", "upload_session_commit", dict(ZS, session_id="0123456789abcdef0123456789abcdef"),
     "no upload session for session_id 0123456789abcdef0123456789abcdef on @URL@ (it was committed and forgotten, removed, or it expired)"),
    ("zs-replace-elsewhere", "image_upload", dict(SF, src="@FILE@", path="bad/x.img", replace=False),
     "option replace: replace belongs to provider zstack; provider servicefabric takes compress, path"),
    ("zs-absent-no-name", "image_upload", dict(ZS, state="absent", backup_storage="bs"),
     "provider zstack removes content with name, backup_storage: name is missing"),
    ("zs-replace-type", "image_upload", dict(ZS, src="@FILE@", name="n", backup_storage="bs", replace="sometimes"),
     "regex:argument 'replace' is of type (<class 'str'>|str) and we were unable to convert to bool"),
    ("zs-parallel", "image_upload", dict(ZS, src="@FILE@", name="n", backup_storage="bs", parallel=65),
     "parallel must be between 1 and 64, got 65"),
    # -- vSphere -----------------------------------------------------------------------------------
    ("vs-item-missing", "image_upload", dict(VS, src="@FILE@", library="images"),
     "provider vsphere uploads with src, library, item: item is missing"),
    ("vs-library-unknown", "image_upload", dict(VS, src="@FILE@", library="nope", item="i"),
     "library 'nope' not found on @URL@: give the name or id of an existing content library"),
    ("vs-wrong-password", "image_upload", dict(VS, password="Not-The-Password-7", src="@FILE@", library="images", item="i"),
     "login to @URL@ as @VUSER@ failed: wrong user name or password (HTTP 401 from POST /api/session)"),
    ("vs-no-credentials", "image_upload", dict(VS, username=None, password=None, src="@FILE@", library="images", item="i"),
     "provider vsphere needs username and password (options username and password, or IMAGESTORE_USERNAME and IMAGESTORE_PASSWORD)"),
    ("vs-src-directory", "image_upload", dict(VS, src="@DIR@", library="images", item="i"),
     "src: @DIR@ is a directory; this provider uploads one file (an image, an OVA, or an OVF descriptor with the files it "
     "references)"),
    ("vs-api-style", "image_upload", dict(VS, src="@FILE@", library="images", item="i", api_style="soap"),
     "value of api_style must be one of: auto, api, rest, got: soap"),
    ("vs-foreign-option", "image_upload", dict(VS, src="@FILE@", library="images", item="i", backup_storage="bs"),
     "option backup_storage: backup_storage belongs to provider zstack; provider vsphere takes api_style, file_name, item, "
     "keep_session_on_failure, library"),
    ("vs-info-library-only", "upload_session_info", dict(VS, library="images"),
     "provider vsphere looks up upload sessions by session_id, or by library and item; give the missing item"),
    ("vs-commit-unknown", "upload_session_commit", dict(VS, session_id="no-such-session"),
     "no upload session for session_id no-such-session on @URL@ (it was committed and forgotten, removed, or it expired)"),
    ("vs-absent-item-missing", "image_upload", dict(VS, state="absent", library="images"),
     "provider vsphere removes content with library, item: item is missing"),
    ("vs-checksum-bad", "image_upload", dict(VS, src="@FILE@", library="images", item="i", checksum="sha256:xyz"),
     "checksum 'sha256:xyz' is not a checksum: give <algorithm>:<hex digest>, e.g. sha256:%s (algorithms: md5, sha1, sha256, "
     "sha512)" % ("0" * 64)),
    ("vs-keep-type", "image_upload", dict(VS, src="@FILE@", library="images", item="i", keep_session_on_failure="often"),
     "regex:argument 'keep_session_on_failure' is of type (<class 'str'>|str) and we were unable to convert to bool"),
]


def substitute(value, table):
    text = json.dumps(value)
    for key, replacement in table.items():
        text = text.replace(key, replacement)
    return json.loads(text)


def state(emu):
    """What the server holds, to show a failed run changed nothing."""
    return (emu.control("GET", "servicefabric/sessions").json(), emu.stats("servicefabric")["chunk_bytes"],
            emu.control("GET", "zstack/jobs").json(), emu.stats("zstack")["slice_bytes"],
            emu.control("GET", "vsphere/items").json(), emu.control("GET", "vsphere/sessions").json())


@pytest.fixture(scope="module")
def outcomes(imagestore_emulator, tmp_path_factory, collections_path):
    from tests.conftest import AnsibleRunner
    work = tmp_path_factory.mktemp("bad-input")
    src = work / "disk.img"
    src.write_bytes(b"x" * 100000)
    (work / "dir").mkdir()
    import os
    os.mkfifo(str(work / "fifo"))
    creds = imagestore_emulator.credentials
    table = {"@URL@": imagestore_emulator.url, "@FILE@": str(src), "@DIR@": str(work / "dir"), "@FIFO@": str(work / "fifo"),
             "@ZUSER@": creds["zstack"]["username"], "@ZPASS@": creds["zstack"]["password"],
             "@VUSER@": creds["vsphere"]["username"], "@VPASS@": creds["vsphere"]["password"]}
    before = state(imagestore_emulator)
    tasks = []
    for case_id, module, args, _expected in CASES:
        args = dict((k, v) for k, v in substitute(args, table).items() if v is not None)
        tasks.append({"name": case_id, "imagestore.upload." + module: args})
    run = AnsibleRunner(work, collections_path).run(tasks, verbosity=3)
    after = state(imagestore_emulator)
    return dict((case[0], result) for case, result in zip(CASES, run.results)), run.output, before, after, table


def test_there_are_enough_cases():
    assert len(CASES) >= 40
    assert len(set(c[0] for c in CASES)) == len(CASES)
    assert set(c[1] for c in CASES) == {"image_upload", "upload_session_info", "upload_session_commit", "upload_session_absent"}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_fails_with_a_specific_message(outcomes, case):
    results = outcomes[0]
    case_id, _module, _args, expected = case
    expected = substitute(expected, outcomes[4])
    result = results[case_id]
    assert result.get("failed") is True, result
    msg = result["msg"]
    if expected.startswith("regex:"):             # Ansible's own wording, which varies between ansible-core versions
        assert re.match(expected[len("regex:"):], msg), msg
    elif expected.startswith("contains:"):
        assert expected[len("contains:"):] in msg, msg
    elif expected.startswith("startswith:"):
        assert msg.startswith(expected[len("startswith:"):]), msg
    else:
        assert msg == expected
    # ansible-core 2.19+ adds "exception": "(traceback unavailable)" at -vvv: there must be no real traceback
    assert "Traceback" not in msg and "Traceback (most recent call last)" not in str(result.get("exception", ""))


def test_nothing_changed_on_the_server_and_no_traceback_or_secret(outcomes):
    _results, output, before, after, table = outcomes
    assert before == after
    assert_no_traceback(output)
    for secret in (table["@ZPASS@"], table["@VPASS@"], "Hunter2-Secret"):
        assert secret not in output
