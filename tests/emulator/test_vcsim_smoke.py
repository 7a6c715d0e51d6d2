"""The /rest upload flow against the real peer, govmomi's vcsim (see tests/vcsim/ and docs/vcsim-notes.md).

Skipped when Go or the govmomi sources are missing, unless ``IMAGESTORE_REQUIRE_VCSIM=1``, which
turns the skip into a failure (CI jobs that installed them must not pass silently). Settings:
``IMAGESTORE_VCSIM_DIR`` (where the binary is cached; default the pytest cache, else a temporary
directory) and ``IMAGESTORE_VCSIM_GOPATH`` (default ``/usr/share/gocode``).
"""

import hashlib
import os

import pytest
import requests

REST = "/rest/com/vmware"

pytestmark = pytest.mark.vcsim


@pytest.fixture
def http():
    """requests without certificate checks: vcsim's certificate is self-signed.

    ``trust_env`` is off because requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a
    session's ``verify = False`` (psf/requests#3829).
    """
    session = requests.Session()
    session.verify = False
    session.trust_env = False
    with session:
        yield session


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_rest_upload_flow(vcsim, http):
    url = vcsim["url"]
    assert vcsim["scheme"] == "https" and url.startswith("https://127.0.0.1:")
    r = http.post(url + REST + "/cis/session", auth=(vcsim["username"], vcsim["password"]), headers={"vmware-use-header-authn": "true"})
    assert r.status_code == 200, r.text
    headers = {"vmware-api-session-id": r.json()["value"]}
    assert http.get(url + REST + "/content/library").status_code == 401            # the header is required

    r = http.post(url + REST + "/content/local-library", headers=headers, json={"create_spec": {
        "name": "smoke", "type": "LOCAL", "storage_backings": [{"type": "DATASTORE", "datastore_id": vcsim["datastore_id"]}]}})
    assert r.status_code == 200, r.text
    library_id = r.json()["value"]
    r = http.post(url + REST + "/content/library?~action=find", headers=headers, json={"spec": {"name": "smoke"}})
    assert r.json()["value"] == [library_id]

    r = http.post(url + REST + "/content/library/item", headers=headers,
                  json={"create_spec": {"name": "disk", "library_id": library_id, "type": "file"}})
    assert r.status_code == 200, r.text
    item_id = r.json()["value"]
    r = http.post(url + REST + "/content/library/item/update-session", headers=headers,
                  json={"client_token": "smoke-1", "create_spec": {"library_item_id": item_id}})
    assert r.status_code == 200, r.text
    session_id = r.json()["value"]

    data = os.urandom(256 * 1024 + 3)
    r = http.post(url + REST + "/content/library/item/updatesession/file/id:%s?~action=add" % session_id, headers=headers, json={
        "file_spec": {"name": "disk.img", "source_type": "PUSH", "size": len(data),
                      "checksum_info": {"algorithm": "SHA1", "checksum": hashlib.sha1(data).hexdigest()}}})
    assert r.status_code == 200, r.text
    info = r.json()["value"]
    assert info["status"] == "WAITING_FOR_TRANSFER"
    uri = info["upload_endpoint"]["uri"]
    assert uri.startswith(url + "/rest/com/vmware/cis/data/") and uri.endswith("/disk.img")

    assert http.put(uri, data=data).status_code == 401                             # the data endpoint needs the header too
    r = http.put(uri, data=data, headers=dict(headers, **{"Content-Type": "application/octet-stream"}))
    assert r.status_code == 200, r.text
    r = http.post(url + REST + "/content/library/item/update-session/id:%s?~action=complete" % session_id, headers=headers)
    assert r.status_code == 200, r.text
    r = http.get(url + REST + "/content/library/item/update-session/id:" + session_id, headers=headers)
    assert r.json()["value"]["state"] == "DONE"

    r = http.get(url + REST + "/content/library/item/file", headers=headers, params={"library_item_id": item_id})
    assert r.status_code == 200, r.text
    files = r.json()["value"]
    assert [(f["name"], f["size"]) for f in files] == [("disk.img", len(data))]
    r = http.post(url + REST + "/content/library/item/file/id:%s?~action=get" % item_id, headers=headers, json={"name": "disk.img"})
    assert r.json()["value"]["size"] == len(data)
