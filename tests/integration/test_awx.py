"""AWX-readiness: the demo playbook through ansible-runner (the engine AWX runs jobs with), and the
custom credential types rendered the way AWX renders them, feeding the modules' IMAGESTORE_* variables."""

import glob
import os

import ansible_runner
import jinja2
import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_demo_playbook_through_ansible_runner(imagestore_target, tmp_path, collections_path):
    sf = imagestore_target("servicefabric")
    private = tmp_path / "runner"
    (private / "project").mkdir(parents=True)
    (private / "project" / "demo.yml").write_text(open(os.path.join(ROOT, "examples", "demo.yml")).read())
    env = {"IMAGESTORE_PROVIDER": "servicefabric", "IMAGESTORE_ENDPOINT": sf.endpoint,
           "DEMO_WORKDIR": str(tmp_path / "work"), "ANSIBLE_COLLECTIONS_PATH": collections_path,
           "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false", "IMAGESTORE_DIGEST_CACHE": str(tmp_path / "digests.json")}
    r = ansible_runner.run(private_data_dir=str(private), playbook="demo.yml", envvars=env, quiet=True,
                           extravars={"image_size_mib": 8})
    assert r.status == "successful" and r.rc == 0, r.stdout.read()
    uploads = [e["event_data"] for e in r.events
               if e["event"] == "runner_on_ok" and e["event_data"].get("task_action") == "imagestore.upload.image_upload"]
    assert [u["res"]["changed"] for u in uploads] == [True, False]
    assert uploads[0]["res"]["bytes_sent"] == 8 * 1024 * 1024 and uploads[1]["res"]["bytes_sent"] == 0
    assert r.stats["failures"] == {} and r.stats["ok"]["localhost"] >= 8
    artifacts = os.path.join(str(private), "artifacts", r.config.ident)
    assert os.path.exists(os.path.join(artifacts, "stdout")) and os.path.exists(os.path.join(artifacts, "rc"))
    assert glob.glob(os.path.join(artifacts, "job_events", "*.json"))


class _Tower:
    class filename:  # noqa: N801  (the name AWX gives it in injector templates)
        pass


def render(credential_type, inputs):
    """Render a credential type's env injectors as AWX does (files become paths under tower.filename)."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    tower = _Tower()
    for key in credential_type["injectors"].get("file", {}):
        setattr(tower.filename, key.split(".", 1)[1], "/runner/env/%s" % key)
    values = dict((f["id"], inputs.get(f["id"], f.get("default", ""))) for f in credential_type["inputs"]["fields"])
    return dict((k, env.from_string(v).render(tower=tower, **values))
                for k, v in credential_type["injectors"]["env"].items())


@pytest.mark.parametrize("provider", ["servicefabric", "vsphere", "zstack"])
def test_credential_types_inject_what_the_modules_read(provider):
    with open(os.path.join(ROOT, "awx", "credential_types", "%s.yml" % provider)) as fh:
        ct = yaml.safe_load(fh)
    assert ct["kind"] == "cloud" and set(ct) >= {"name", "inputs", "injectors"}
    ids = [f["id"] for f in ct["inputs"]["fields"]]
    assert set(ct["inputs"]["required"]) <= set(ids)
    secret = [f["id"] for f in ct["inputs"]["fields"] if f.get("secret")]
    assert secret, "credentials must mark their secrets"
    rendered = render(ct, {"endpoint": "https://x.example:443", "username": "u", "password": "p",
                           "client_cert": "PEM", "validate_certs": False})
    assert rendered["IMAGESTORE_PROVIDER"] == provider and rendered["IMAGESTORE_ENDPOINT"] == "https://x.example:443"
    documented = set()
    with open(os.path.join(ROOT, "plugins", "doc_fragments", "connection.py")) as fh:
        for word in fh.read().split():
            if word.startswith("E(IMAGESTORE_"):
                documented.add(word[2:].split(")")[0])
    assert set(rendered) <= documented, set(rendered) - documented
    assert rendered["IMAGESTORE_VALIDATE_CERTS"] == "False"
