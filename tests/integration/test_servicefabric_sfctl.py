"""A package uploaded by Microsoft's sfctl, then by image_upload (issue 13 item 6): the module sees what sfctl stored,
uploads each file once more (sfctl leaves no record of what it uploaded, so the content cannot be shown to be the
same), and then changes nothing."""

import os

import requests

MiB = 1024 * 1024


def test_a_package_sfctl_uploaded_is_uploaded_once_more_then_unchanged(sfctl_run, ansible, imagestore_target, tmp_path):
    target = imagestore_target("servicefabric")
    pkg = tmp_path / "SfctlApp"
    files = {"ApplicationManifest.xml": b"<ApplicationManifest/>", "Svc/ServiceManifest.xml": b"<ServiceManifest/>",
             "Svc/Code/app.dll": os.urandom(2 * MiB + 3), "Svc/Config/Settings.xml": b"<Settings/>"}
    for rel, data in files.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_bytes(data)
    sfctl_run("cluster", "select", "--endpoint", target.endpoint)
    sfctl_run("application", "upload", "--path", str(pkg))
    for rel, data in files.items():
        assert requests.get(target.endpoint + "/_emulator/servicefabric/content/SfctlApp/" + rel).content == data
    args = target.module_args(src=str(pkg), path="SfctlApp", chunk_size="1MiB")
    first, run = ansible.module("image_upload", args)
    assert first["changed"] and first["compared"] == ["record"], run.output[-3000:]
    assert "has no record of this collection" in first["msg"]
    second, run = ansible.module("image_upload", args)
    assert second["changed"] is False and second["bytes_sent"] == 0 and second["compared"] == ["sha256"], run.output[-3000:]
