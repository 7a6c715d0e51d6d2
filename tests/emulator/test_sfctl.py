"""Microsoft's own CLI against the emulator (issue 13 item 6): the real ``sfctl`` selects the emulator and
uploads an application package, plain and ``--compress``ed, and every file is stored byte-identical.

sfctl pins old dependencies, so it lives in a virtual environment of its own; ``IMAGESTORE_SFCTL`` is the
path of its ``sfctl`` executable (see docs/emulator.md). Without it these tests skip, unless
``IMAGESTORE_REQUIRE_SFCTL=1`` (CI), where they fail instead.
"""

import io
import os
import zipfile

import pytest
import requests

from imagestore_emulator.testing import running_emulator

APP_MANIFEST = """<?xml version="1.0" encoding="utf-8"?>
<ApplicationManifest xmlns="http://schemas.microsoft.com/2011/01/fabric" ApplicationTypeName="DemoType"
                     ApplicationTypeVersion="1.0.0">
  <ServiceManifestImport><ServiceManifestRef ServiceManifestName="WebPkg" ServiceManifestVersion="1.0.0"/></ServiceManifestImport>
  <ServiceManifestImport><ServiceManifestRef ServiceManifestName="WorkerPkg" ServiceManifestVersion="1.0.0"/></ServiceManifestImport>
</ApplicationManifest>
"""
SERVICE_MANIFEST = """<?xml version="1.0" encoding="utf-8"?>
<ServiceManifest Name="%s" Version="1.0.0" xmlns="http://schemas.microsoft.com/2011/01/fabric">
  <CodePackage Name="Code" Version="1.0.0"><EntryPoint><ExeHost><Program>run</Program></ExeHost></EntryPoint></CodePackage>
  <ConfigPackage Name="Config" Version="1.0.0"/>
  %s
</ServiceManifest>
"""


@pytest.fixture(scope="module")
def emulator():
    with running_emulator() as info:
        yield info


@pytest.fixture
def run(sfctl_run):
    return sfctl_run


def package(root):
    """An application package: two service packages, nested folders, an empty file, a data package; returns
    {relative path: bytes} of every file."""
    files = {
        "ApplicationManifest.xml": APP_MANIFEST.encode(),
        "WebPkg/ServiceManifest.xml": (SERVICE_MANIFEST % ("WebPkg", "")).encode(),
        "WebPkg/Code/web.dll": os.urandom(300 * 1024),
        "WebPkg/Code/wwwroot/css/site.css": b"body { margin: 0 }\n",
        "WebPkg/Code/wwwroot/index.html": b"<html></html>\n",
        "WebPkg/Code/empty.marker": b"",
        "WebPkg/Config/Settings.xml": b"<Settings/>\n",
        "WorkerPkg/ServiceManifest.xml": (SERVICE_MANIFEST % ("WorkerPkg", '<DataPackage Name="Data" Version="1.0.0"/>')).encode(),
        "WorkerPkg/Code/worker.bin": os.urandom(70 * 1024),
        "WorkerPkg/Config/Settings.xml": b"<Settings><Section Name='a'/></Settings>\n",
        "WorkerPkg/Data/model/weights.bin": os.urandom(5000),
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def stored(url, path):
    r = requests.get(url + "/_emulator/servicefabric/content/" + path)
    return r.content if r.status_code == 200 else None


def listing(url, folder):
    r = requests.get(url + "/ImageStore/" + folder, params={"api-version": "6.2"})
    assert r.status_code == 200, r.text
    return r.json()


def test_select_the_emulator(run, emulator):
    done = run("cluster", "select", "--endpoint", emulator["url"])
    assert "Traceback" not in done.stderr
    shown = run("cluster", "show-connection")
    assert emulator["url"] in shown.stdout


def test_upload_a_package(run, emulator, tmp_path):
    url = emulator["url"]
    requests.post(url + "/_emulator/reset")
    files = package(tmp_path / "DemoApp")
    run("cluster", "select", "--endpoint", url)
    done = run("application", "upload", "--path", str(tmp_path / "DemoApp"), "--show-progress")
    assert "Complete" in done.stderr
    for rel, data in files.items():
        assert stored(url, "DemoApp/" + rel) == data, rel
    folders = {"", "WebPkg", "WebPkg/Code", "WebPkg/Code/wwwroot", "WebPkg/Code/wwwroot/css", "WebPkg/Config", "WorkerPkg",
               "WorkerPkg/Code", "WorkerPkg/Config", "WorkerPkg/Data", "WorkerPkg/Data/model"}
    for folder in folders:                               # each folder is marked complete by an empty _.dir
        assert stored(url, "/".join(p for p in ("DemoApp", folder, "_.dir") if p)) == b"", folder
    top = listing(url, "DemoApp")
    assert [f["StoreRelativePath"] for f in top["StoreFiles"]] == ["DemoApp\\ApplicationManifest.xml", "DemoApp\\_.dir"]
    received = requests.get(url + "/_emulator/servicefabric/received").json()["totals"]
    assert received["repeat_file_bodies"] == 0 and received["chunk_bodies"] == 0
    assert received["file_bodies"] == len(files) + len(folders)


def test_upload_compressed(run, emulator, tmp_path):
    url = emulator["url"]
    requests.post(url + "/_emulator/reset")
    files = package(tmp_path / "ZipApp")
    run("cluster", "select", "--endpoint", url)
    run("application", "upload", "--path", str(tmp_path / "ZipApp"), "--compress")
    assert not (tmp_path / "sfctl_compressed_temp" / "ZipApp").exists()       # removed after the upload
    assert stored(url, "ZipApp/ApplicationManifest.xml") == files["ApplicationManifest.xml"]
    for service, packages in (("WebPkg", ("Code", "Config")), ("WorkerPkg", ("Code", "Config", "Data"))):
        assert stored(url, "ZipApp/%s/ServiceManifest.xml" % service) == files["%s/ServiceManifest.xml" % service]
        for name in packages:
            assert stored(url, "ZipApp/%s/%s/_.dir" % (service, name)) is None      # no folder: a zip instead
            archive = zipfile.ZipFile(io.BytesIO(stored(url, "ZipApp/%s/%s.zip" % (service, name))))
            prefix = "%s/%s/" % (service, name)
            expected = {rel[len(prefix):]: data for rel, data in files.items() if rel.startswith(prefix)}
            members = {i.filename: archive.read(i) for i in archive.infolist() if not i.is_dir()}
            assert members == expected, (service, name)
            assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in archive.infolist() if not i.is_dir())
