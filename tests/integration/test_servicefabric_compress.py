"""compress: true for application packages (issue 15 item 4): each code/config/data package goes up as a zip beside its
service manifest; the same files give the same zip, so re-runs compare and resume by content."""

import io
import shutil
import zipfile

import pytest

from ansible_helpers import make_file

APP = """<?xml version="1.0" encoding="utf-8"?>
<ApplicationManifest xmlns="http://schemas.microsoft.com/2011/01/fabric" ApplicationTypeName="CalcType" ApplicationTypeVersion="1.0.0">
  <ServiceManifestImport><ServiceManifestRef ServiceManifestName="CalcPkg" ServiceManifestVersion="1.0.0"/></ServiceManifestImport>
</ApplicationManifest>
"""
SERVICE = """<?xml version="1.0" encoding="utf-8"?>
<ServiceManifest xmlns="http://schemas.microsoft.com/2011/01/fabric" Name="CalcPkg" Version="1.0.0">
  <CodePackage Name="Code" Version="1.0.0"><EntryPoint><ExeHost><Program>calc.exe</Program></ExeHost></EntryPoint></CodePackage>
  <ConfigPackage Name="Config" Version="1.0.0"/>
</ServiceManifest>
"""


@pytest.fixture
def pkg(tmp_path):
    root = tmp_path / "CalcApp"
    (root / "CalcPkg" / "Code" / "lib").mkdir(parents=True)
    (root / "CalcPkg" / "Config").mkdir()
    (root / "ApplicationManifest.xml").write_text(APP)
    (root / "CalcPkg" / "ServiceManifest.xml").write_text(SERVICE)
    for i in range(40):
        make_file(str(root / "CalcPkg" / "Code" / "lib" / ("m%02d.dll" % i)), 4096, seed=i)
    make_file(str(root / "CalcPkg" / "Code" / "calc.exe"), 300000, seed=99)
    (root / "CalcPkg" / "Config" / "Settings.xml").write_text("<Settings/>")
    return root


def zip_names(emu, path):
    data = emu.stored_bytes("servicefabric", path)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return archive, sorted(archive.namelist()), {n: archive.read(n) for n in archive.namelist() if not n.endswith("/")}


def test_packages_go_as_reproducible_zips_and_reruns_compare_by_content(ansible, imagestore_target, imagestore_emulator,
                                                                       pkg, tmp_path):
    emu = imagestore_emulator
    args = imagestore_target("servicefabric").module_args(src=str(pkg), path="cz/CalcApp", compress=True)
    first, run = ansible.module("image_upload", args)
    assert first["changed"] and not first.get("failed"), run.output[-3000:]
    assert sorted(first["compressed"]) == ["CalcPkg/Code.zip", "CalcPkg/Config.zip"]
    assert emu.stored_bytes("servicefabric", "cz/CalcApp/ApplicationManifest.xml") == APP.encode()
    assert emu.stored_bytes("servicefabric", "cz/CalcApp/CalcPkg/ServiceManifest.xml") == SERVICE.encode()
    assert emu.stored_bytes("servicefabric", "cz/CalcApp/CalcPkg/Code/calc.exe") is None            # zipped, not plain
    _, names, contents = zip_names(emu, "cz/CalcApp/CalcPkg/Code.zip")
    assert names == ["calc.exe", "lib/"] + ["lib/m%02d.dll" % i for i in range(40)]
    assert contents["calc.exe"] == (pkg / "CalcPkg" / "Code" / "calc.exe").read_bytes()
    assert emu.stored_bytes("servicefabric", "cz/CalcApp/CalcPkg/_.dir") == b""
    assert emu.stored_bytes("servicefabric", "cz/CalcApp/CalcPkg/Code/_.dir") is None                 # zipped: no marker

    again, run = ansible.module("image_upload", args)
    assert again["changed"] is False and again["compressed"] == [], run.output[-3000:]

    copy = tmp_path / "elsewhere"                          # the same files on another host: new inodes, the same zips
    shutil.copytree(str(pkg), str(copy))
    moved, run = ansible.module("image_upload", dict(args, src=str(copy)))
    assert moved["changed"] is False and sorted(moved["compressed"]) == ["CalcPkg/Code.zip", "CalcPkg/Config.zip"]

    (copy / "CalcPkg" / "Config" / "Settings.xml").write_text("<Settings><Section Name='x'/></Settings>")
    changed, run = ansible.module("image_upload", dict(args, src=str(copy)))
    assert changed["changed"] and changed["compressed"] == ["CalcPkg/Config.zip"], run.output[-3000:]
    sent = {f["name"]: f["bytes_sent"] for f in changed["files"]}
    assert sent["CalcPkg/Code.zip"] == 0 and sent["CalcPkg/Config.zip"] > 0


def test_compress_needs_a_package(ansible, imagestore_target, tmp_path):
    folder = tmp_path / "NotAnApp"
    folder.mkdir()
    (folder / "a.txt").write_text("a")
    result, _ = ansible.module("image_upload", imagestore_target("servicefabric").module_args(
        src=str(folder), path="cz/NotAnApp", compress=True))
    assert result["failed"] and result["msg"] == ("compress needs an application package: %s has no ApplicationManifest.xml "
                                                  "at its top" % folder)
