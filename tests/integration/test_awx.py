"""AWX, as docs/awx.md walks through it: credential type -> credential -> execution environment -> job template.

- the demo playbook through ansible-runner (the engine AWX runs jobs with);
- the execution environment of awx/execution-environment.yml: ``ansible-galaxy collection build`` into its
  folder, ``ansible-builder create``, then the galaxy, introspection and pip steps the generated Containerfile
  runs in the image, run here against temporary folders (no container engine runs here);
- the credential types of awx/credential_types/ injected as AWX injects them (files under the job's private
  data dir, then env and extra_vars rendered in a sandbox), feeding awx/playbooks/upload.yml through
  ansible-runner with the collection as the execution environment installed it, against the emulator.
"""

import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import ansible_runner
import jinja2
import jinja2.sandbox
import pytest
import requests
import trustme
import yaml

from imagestore_emulator.process import EmulatorProcess
from tests.conftest import make_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
PROVIDERS = ["servicefabric", "vsphere", "zstack"]


def load_yaml(*parts):
    with open(os.path.join(ROOT, *parts)) as fh:
        return yaml.safe_load(fh)


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


# -- credential types --------------------------------------------------------------------------------------


def awx_inject(credential_type, inputs, private_data_dir):
    """Inject a credential of a custom credential type as AWX does when it launches a job; return (env, extra_vars).

    The template namespace holds the inputs that have a value (an empty string is left out, booleans stay as
    they are) and every boolean field the credential does not set, as false. Each file injector is rendered
    into its own file under ``<private_data_dir>/env`` (owner read/write only) whose path the other templates
    see as ``tower.filename.<name>``. env and extra_vars are rendered in a sandboxed Jinja environment with
    the default (lenient) undefined.
    """
    namespace = {}
    for key, value in inputs.items():
        if isinstance(value, bool) or value:
            namespace[key] = value
    for field in credential_type["inputs"]["fields"]:
        if field["type"] == "boolean" and field["id"] not in inputs:
            namespace[field["id"]] = False
    sandbox = jinja2.sandbox.ImmutableSandboxedEnvironment()
    env_dir = os.path.join(private_data_dir, "env")
    os.makedirs(env_dir, exist_ok=True)
    files = {}
    for label, template in credential_type["injectors"].get("file", {}).items():
        fd, path = tempfile.mkstemp(dir=env_dir)
        with os.fdopen(fd, "w") as fh:
            fh.write(sandbox.from_string(template).render(**namespace))
        os.chmod(path, 0o600)
        files[label.split(".", 1)[1]] = path
    namespace["tower"] = type("Tower", (), {"filename": type("Files", (), files)})

    def render(node):
        if isinstance(node, dict):
            return dict((render(k), render(v)) for k, v in node.items())
        if isinstance(node, list):
            return [render(v) for v in node]
        return sandbox.from_string(node).render(**namespace)

    env = dict((k, render(v)) for k, v in credential_type["injectors"].get("env", {}).items())
    return env, render(credential_type["injectors"].get("extra_vars", {}))


def render_strict(credential_type, inputs):
    """The env injectors with every field given and StrictUndefined: a misspelt field name fails here."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    files = type("Files", (), dict((k.split(".", 1)[1], "/runner/env/%s" % k)
                                   for k in credential_type["injectors"].get("file", {})))
    tower = type("Tower", (), {"filename": files})
    return dict((k, env.from_string(v).render(tower=tower, **inputs))
                for k, v in credential_type["injectors"]["env"].items())


@pytest.mark.parametrize("provider", PROVIDERS)
def test_credential_types_inject_what_the_modules_read(provider, tmp_path):
    ct = load_yaml("awx", "credential_types", "%s.yml" % provider)
    assert ct["kind"] == "cloud" and set(ct) >= {"name", "inputs", "injectors"}
    ids = [f["id"] for f in ct["inputs"]["fields"]]
    assert set(ct["inputs"]["required"]) <= set(ids)
    secret = [f["id"] for f in ct["inputs"]["fields"] if f.get("secret")]
    assert secret, "credentials must mark their secrets"
    every = {"endpoint": "https://x.example:443", "username": "u", "password": "p", "client_cert": "PEM",
             "ca_bundle": "CA", "skip_tls_verify": True}
    rendered = render_strict(ct, dict((k, v) for k, v in every.items() if k in ids))
    assert rendered["IMAGESTORE_PROVIDER"] == provider and rendered["IMAGESTORE_ENDPOINT"] == "https://x.example:443"
    documented = set()
    with open(os.path.join(ROOT, "plugins", "doc_fragments", "connection.py")) as fh:
        for word in fh.read().split():
            if word.startswith("E(IMAGESTORE_"):
                documented.add(word[2:].split(")")[0])
    assert set(rendered) <= documented, set(rendered) - documented
    assert rendered["IMAGESTORE_VALIDATE_CERTS"] == "False"
    # a credential that leaves the box and the optional fields alone verifies certificates, and sets no paths
    required = dict((k, every[k]) for k in ct["inputs"]["required"])
    env, extra_vars = awx_inject(ct, required, str(tmp_path))
    assert env["IMAGESTORE_VALIDATE_CERTS"] == "True" and env["IMAGESTORE_CA_PATH"] == "" and extra_vars == {}
    assert env.get("IMAGESTORE_CLIENT_CERT", "") == ""


# -- the execution environment ----------------------------------------------------------------------------


def run(cmd, cwd=None, env=None):
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.returncode == 0, "%s\n%s" % (" ".join(cmd), proc.stdout[-4000:])
    return proc.stdout


def containerfile_step(text, pattern):
    """The RUN line of the generated Containerfile that matches ``pattern``, without its RUN."""
    for line in text.splitlines():
        if line.startswith("RUN ") and re.search(pattern, line):
            return line[4:]
    raise AssertionError("no RUN line matches %r in:\n%s" % (pattern, text))


@pytest.fixture(scope="module")
def execution_environment(tmp_path_factory):
    """docs/awx.md's steps, then the Containerfile's galaxy, introspection and pip steps on temporary folders."""
    top = tmp_path_factory.mktemp("ee")
    ee = top / "build" / "ee"
    ee.mkdir(parents=True)
    shutil.copy(os.path.join(ROOT, "awx", "execution-environment.yml"), str(ee))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false", ANSIBLE_HOME=str(top / "ansible-home"))
    run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--force", "--output-path", str(ee), ROOT], env=env)
    out = run([os.path.join(BIN, "ansible-builder"), "create"], cwd=str(ee), env=env)
    context = ee / "context"
    containerfile = [p for p in (context / "Containerfile", context / "Dockerfile") if p.exists()]
    assert containerfile, out
    text = containerfile[0].read_text()

    # galaxy stage: COPY _build /build, WORKDIR /build, then its ansible-galaxy collection install
    assert "COPY _build /build" in text and "WORKDIR /build" in text
    galaxy = containerfile_step(text, r"ansible-galaxy collection install")
    collections = top / "usr-share-ansible" / "collections"
    galaxy = galaxy.replace("$ANSIBLE_GALAXY_CLI_COLLECTION_OPTS", "").replace("/usr/share/ansible/collections",
                                                                              str(collections))
    out = run(["bash", "-c", galaxy], cwd=str(context / "_build"),      # in the image, that path is Ansible's default
              env=dict(env, PATH=BIN + os.pathsep + env["PATH"], ANSIBLE_COLLECTIONS_PATH=str(collections)))
    assert "imagestore.upload:%s was installed successfully" % load_yaml("galaxy.yml")["version"] in out, out

    # builder stage: introspect.py writes the Python requirements of the installed collections
    introspect = containerfile_step(text, r"introspect\.py introspect")
    assert "--write-pip=/tmp/src/requirements.txt" in introspect
    src = top / "src"
    run([sys.executable, str(context / "_build" / "scripts" / "introspect.py"), "introspect",
         "--write-pip=%s" % (src / "requirements.txt"), "--write-bindep=%s" % (src / "bindep.txt"), str(collections)])

    # final stage: assemble pip-installs those requirements; here into a folder of their own
    site = top / "site-packages"
    run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-q", "--target", str(site),
         "-r", str(src / "requirements.txt")])
    return {"ee": ee, "context": context, "containerfile": text, "collections": collections,
            "requirements": (src / "requirements.txt").read_text(), "site": site}


def test_execution_environment_builds_as_documented(execution_environment):
    ee = execution_environment
    galaxy = load_yaml("galaxy.yml")
    tarball = "%s-%s-%s.tar.gz" % (galaxy["namespace"], galaxy["name"], galaxy["version"])
    definition = load_yaml("awx", "execution-environment.yml")
    assert definition["additional_build_files"][0]["src"] == tarball, "awx/execution-environment.yml names another version"
    assert (ee["context"] / "_build" / "collections" / tarball).is_file()
    with open(str(ee["collections"] / "ansible_collections" / "imagestore" / "upload" / "MANIFEST.json")) as fh:
        assert json.load(fh)["collection_info"]["version"] == galaxy["version"]
    assert "requests>=2.25  # from collection imagestore.upload" in ee["requirements"]
    assert glob.glob(str(ee["site"] / "requests" / "__init__.py"))
    doc = open(os.path.join(ROOT, "docs", "awx.md")).read()
    for step in ("cp awx/execution-environment.yml build/ee/", "ansible-galaxy collection build --force --output-path build/ee .",
                 "ansible-builder create"):
        assert step in doc, step


# -- a job template with a credential ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_servicefabric(tmp_path_factory):
    """An emulator over HTTPS that requires a client certificate, and the PEMs a credential holds."""
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    client = ca.issue_cert("awx-job@example.com")
    d = tmp_path_factory.mktemp("pki")
    paths = {}
    for name, blob in (("ca", ca.cert_pem), ("server_cert", server.cert_chain_pems[0]), ("server_key", server.private_key_pem)):
        paths[name] = str(d / (name + ".pem"))
        blob.write_to_path(paths[name])
    paths["client"] = str(d / "client.pem")
    client.private_key_and_cert_chain_pem.write_to_path(paths["client"])
    emu = EmulatorProcess(tmp_path_factory.mktemp("tls-emulator"), extra_args=[
        "--tls-cert", paths["server_cert"], "--tls-key", paths["server_key"], "--client-ca", paths["ca"]]).start()
    yield emu, {"client_cert": client.private_key_and_cert_chain_pem.bytes().decode(), "ca_bundle": ca.cert_pem.bytes().decode()}, paths
    emu.stop()


def stored_sha256_tls(emulator, paths, *where):
    """The emulator's read-back over its HTTPS with client certificates."""
    r = requests.get("%s/_emulator/%s" % (emulator.url, emulator.readback_path("servicefabric", *where)),
                     verify=paths["ca"], cert=paths["client"], timeout=60)
    r.raise_for_status()
    return hashlib.sha256(r.content).hexdigest()


def job(private, collections, env, extra_vars):
    """One job run: awx/playbooks/upload.yml through ansible-runner, the collection from the EE's install."""
    envvars = dict(env, ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
                   ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
    r = ansible_runner.run(private_data_dir=str(private), playbook="upload.yml", envvars=envvars, extravars=extra_vars,
                           quiet=True)
    output = r.stdout.read()
    uploads = [e["event_data"]["res"] for e in r.events if e["event"] in ("runner_on_ok", "runner_on_failed")
               and e["event_data"].get("task_action") == "imagestore.upload.image_upload"]
    assert r.status == "successful" and len(uploads) == 1, output
    return uploads[0], output


@pytest.mark.parametrize("provider", PROVIDERS)
def test_job_template_with_credential_and_execution_environment(provider, execution_environment, imagestore_target,
                                                                imagestore_emulator, tls_servicefabric, tmp_path):
    ct = load_yaml("awx", "credential_types", "%s.yml" % provider)
    if provider == "servicefabric":
        emulator, pems, paths = tls_servicefabric
        inputs = dict(pems, endpoint=emulator.url)
    else:
        emulator, target = imagestore_emulator, imagestore_target(provider)
        inputs = {"endpoint": target.endpoint, "username": target.options["username"],
                  "password": target.options["password"]}
    private = tmp_path / "job"
    (private / "project").mkdir(parents=True)
    shutil.copy(os.path.join(ROOT, "awx", "playbooks", "upload.yml"), str(private / "project"))
    env, extra_vars = awx_inject(ct, inputs, str(private))
    if provider == "servicefabric":
        assert open(env["IMAGESTORE_CLIENT_CERT"]).read() == pems["client_cert"] and env["IMAGESTORE_CA_PATH"]
    image = str(tmp_path / "disk.qcow2")
    digest = make_file(image, 5 * 1024 * 1024 + 3, seed=len(provider))
    name = "awx-%s" % os.path.basename(str(tmp_path))[-12:]
    job_vars = dict(extra_vars, image=image, **{
        "servicefabric": {"store_path": "awx/%s.qcow2" % name},
        "vsphere": {"library": "images", "library_item": name},
        "zstack": {"image_name": name, "backup_storage": "bs"}}[provider])

    first, output = job(private, execution_environment["collections"], env, job_vars)
    assert first["changed"] is True and first["bytes_sent"] == 5 * 1024 * 1024 + 3, output
    where = {"servicefabric": lambda r: (r["path"],), "vsphere": lambda r: (r["item_id"], r["destination"]["file_name"]),
             "zstack": lambda r: (r["image_uuid"],)}[provider](first)
    if provider == "servicefabric":
        assert stored_sha256_tls(emulator, paths, *where) == digest
    else:
        assert emulator.stored_sha256(provider, *where) == digest
    second, output = job(private, execution_environment["collections"], env, job_vars)
    assert second["changed"] is False and second["bytes_sent"] == 0, output
    for secret in (inputs.get("password"), inputs.get("client_cert")):
        if secret:
            assert secret not in output
            for path in glob.glob(str(private / "artifacts" / "*" / "job_events" / "*.json")):
                assert secret not in open(path).read(), path
