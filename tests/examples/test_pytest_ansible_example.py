"""pytest-ansible's fixtures beside this plugin's: the example docs/pytest-plugin.md leads with.

pytest-ansible runs modules in this process and finds ``imagestore.upload`` where Ansible does: a
collections path (``ANSIBLE_COLLECTIONS_PATH``, ansible.cfg, ``~/.ansible/collections``) or, by
default, a ``pip install`` of this project in site-packages. Run from a collection's own checkout
(a folder with galaxy.yml, as here), pytest-ansible loads that checkout.
"""

import hashlib
import os
import sys
import uuid

import pytest

# pytest-ansible's own warnings: its host fixtures are marked deprecated (they work), and each run after
# the first finds Ansible's collection loader set up already.
pytestmark = [pytest.mark.filterwarnings("ignore:Host management is deprecated:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:AnsibleCollectionFinder has already been configured:UserWarning")]


@pytest.fixture(autouse=True)
def modules_run_with_this_python(monkeypatch):
    """The modules need ``requests``: run them with this interpreter, not one Ansible discovers."""
    monkeypatch.setenv("ANSIBLE_PYTHON_INTERPRETER", sys.executable)


def destination(provider, target):
    """Where the image goes: a fresh name for each test, so reruns of the suite start empty."""
    name = "pytest-ansible-%s" % uuid.uuid4().hex[:10]
    if provider == "servicefabric":
        return {"path": "ci/%s.img" % name}
    if provider == "vsphere":
        return {"library": target.options["library"], "item": name}
    return {"name": name, "backup_storage": target.options["backup_storage"]}


def stored_at(provider, result):
    """The emulator's read-back address of what ``image_upload`` reported it stored."""
    if provider == "servicefabric":
        return (result["path"],)
    if provider == "vsphere":
        return (result["item_id"], result["destination"]["file_name"])
    return (result["image_uuid"],)


@pytest.mark.parametrize("provider", ["servicefabric", "vsphere", "zstack"])
def test_upload_through_pytest_ansible(localhost, imagestore_target, imagestore_emulator, provider, tmp_path):
    target = imagestore_target(provider)                # the emulator, or a configured real system
    src = tmp_path / "disk.img"
    data = os.urandom(3 * 1024 * 1024 + 17)
    src.write_bytes(data)
    upload = getattr(localhost, "imagestore.upload.image_upload")
    args = target.module_args(src=str(src), **destination(provider, target))

    first = upload(**args)["localhost"]
    assert not first.get("failed"), first.get("msg")
    assert first["changed"] is True and first["bytes_sent"] == len(data)
    if target.emulated:
        assert imagestore_emulator.stored_sha256(provider, *stored_at(provider, first)) == \
            hashlib.sha256(data).hexdigest()

    second = upload(**args)["localhost"]
    assert not second.get("failed"), second.get("msg")
    assert second["changed"] is False and second["bytes_sent"] == 0


@pytest.mark.ansible(inventory="localhost,", connection="local", host_pattern="localhost")
def test_ansible_module_and_adhoc(ansible_module, ansible_adhoc, imagestore_target, imagestore_emulator, tmp_path):
    """The same through ``ansible_module`` (host and connection from the marker) and ``ansible_adhoc``."""
    target = imagestore_target("servicefabric")
    src = tmp_path / "disk.img"
    data = os.urandom(1024 * 1024 + 5)
    src.write_bytes(data)
    path = "ci/adhoc-%s.img" % uuid.uuid4().hex[:10]

    first = getattr(ansible_module, "imagestore.upload.image_upload")(**target.module_args(src=str(src), path=path))
    assert first["localhost"]["changed"] is True, first["localhost"].get("msg")
    if target.emulated:
        assert imagestore_emulator.stored_sha256("servicefabric", path) == hashlib.sha256(data).hexdigest()

    hosts = ansible_adhoc(inventory="localhost,", connection="local")
    info = getattr(hosts["localhost"], "imagestore.upload.upload_session_info")(**target.module_args(path=path))
    assert not info["localhost"].get("failed"), info["localhost"].get("msg")
    again = getattr(hosts["localhost"], "imagestore.upload.image_upload")(**target.module_args(src=str(src), path=path))
    assert again["localhost"]["changed"] is False and again["localhost"]["bytes_sent"] == 0
