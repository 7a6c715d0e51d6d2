"""pytest plugin of imagestore.upload: an emulator for the session, real systems when configured.

Fixtures
  ``imagestore_emulator``      session  the emulator process (``EmulatorProcess``): url, credentials,
                                        read-back of stored bytes, stats, config, kill/restart
  ``imagestore_targets``       session  provider name -> ``Target`` (the emulator, or a real system
                                        when its endpoint is configured)
  ``imagestore_target``        function factory: ``imagestore_target("servicefabric") -> Target``
  ``imagestore_partial_upload`` function factory of half-finished uploads, removed after the test

Configuration (each key: environment variable first, then command-line option, then ini value)
  servicefabric_endpoint  IMAGESTORE_TEST_SERVICEFABRIC_ENDPOINT  --imagestore-servicefabric-endpoint  imagestore_servicefabric_endpoint
  ... see ``SETTINGS`` below and docs/pytest-plugin.md.
"""

import os
import tempfile

import pytest

# Loading the plugin imports nothing from ``ansible_collections`` (nor Ansible, nor the emulator): when
# pytest loads it, no collection loader is set up yet, and importing the collection then would make it
# a plain package that Ansible's collection loader (pytest-ansible's modules, ``ansible-test units``)
# no longer loads as a collection. The fixtures that need collection code import it when they run.
pytest_plugins = ["pytest_imagestore.fixtures_vsphere"]

PROVIDERS = ("servicefabric", "vsphere", "zstack")

#: key -> help text; each key is read from IMAGESTORE_TEST_<KEY>, --imagestore-<key>, ini imagestore_<key>
SETTINGS = {
    "servicefabric_endpoint": "Service Fabric cluster URL to test against instead of the emulator",
    "servicefabric_client_cert": "client certificate (PEM) for the Service Fabric cluster",
    "servicefabric_client_key": "key of the Service Fabric client certificate (PEM)",
    "vsphere_endpoint": "vCenter (or vcsim) URL to test against instead of the emulator",
    "vsphere_username": "vSphere user",
    "vsphere_password": "vSphere password",
    "vsphere_library": "content library to use on the real vCenter (default: images)",
    "zstack_endpoint": "ZStack URL to test against instead of the emulator",
    "zstack_username": "ZStack account",
    "zstack_password": "ZStack password",
    "zstack_backup_storage": "backup storage to use on the real ZStack (default: bs)",
    "validate_certs": "verify TLS certificates of real systems (true/false, default true)",
    "ca_path": "CA bundle for real systems",
    "emulator_args": "extra command-line arguments for the emulator, e.g. '--latency-ms 5'",
}


def pytest_addoption(parser):
    group = parser.getgroup("imagestore", "imagestore.upload: emulator and image store endpoints")
    for key, text in SETTINGS.items():
        group.addoption("--imagestore-%s" % key.replace("_", "-"), dest="imagestore_%s" % key, default=None,
                        help="%s (env IMAGESTORE_TEST_%s)" % (text, key.upper()))
        parser.addini("imagestore_%s" % key, text, default=None)


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    """Beside pytest-ansible: set up Ansible's collection loader now, as Ansible's own commands do first.

    pytest-ansible looks a module up (``getattr(localhost, "imagestore.upload.image_upload")``) before it
    sets that loader up on its first run, so the first call of a collection's module in a test session
    would fail with "not found in configured module paths". Setting it up here, once, with Ansible's
    configuration (``ANSIBLE_COLLECTIONS_PATH``, ansible.cfg, and ``sys.path`` unless
    ``ANSIBLE_COLLECTIONS_SCAN_SYS_PATH`` is false) is what pytest-ansible's first run would do.
    """
    if not config.pluginmanager.has_plugin("ansible"):      # pytest-ansible registers itself as "ansible"
        return
    try:
        from ansible.plugins.loader import init_plugin_loader
        from ansible.utils.collection_loader import AnsibleCollectionConfig
    except ImportError:
        return
    if AnsibleCollectionConfig.collection_finder is None:
        init_plugin_loader()


def setting(config, key, default=None):
    """Resolve one setting: environment variable, then command-line option, then ini, then default."""
    env = os.environ.get("IMAGESTORE_TEST_%s" % key.upper())
    if env:
        return env
    opt = config.getoption("imagestore_%s" % key, default=None)
    if opt:
        return opt
    ini = config.getini("imagestore_%s" % key)
    if ini:
        return ini
    return default


class Target:
    """Where a provider's tests run: connection options for the modules, and whether it is emulated."""

    def __init__(self, provider, endpoint, emulator=None, **options):
        self.provider = provider
        self.endpoint = endpoint
        self.emulator = emulator
        self.options = options

    @property
    def emulated(self):
        return self.emulator is not None

    def module_args(self, **extra):
        """Connection options for an imagestore.upload module, plus ``extra``."""
        args = {"provider": self.provider, "endpoint": self.endpoint}
        args.update((k, v) for k, v in self.options.items() if v is not None and k not in ("library", "backup_storage"))
        args.update(extra)
        return args

    def __repr__(self):
        return "Target(%s, %s%s)" % (self.provider, self.endpoint, ", emulated" if self.emulated else "")


def _truthy(value):
    return str(value).strip().lower() not in ("0", "false", "no", "off")


def resolve_targets(config, emulator_factory):
    targets = {}
    validate = _truthy(setting(config, "validate_certs", "true"))
    ca_path = setting(config, "ca_path")
    emulator = None
    for provider in PROVIDERS:
        endpoint = setting(config, "%s_endpoint" % provider)
        if endpoint:
            opts = {"validate_certs": validate, "ca_path": ca_path}
            if provider == "servicefabric":
                opts.update(client_cert=setting(config, "servicefabric_client_cert"),
                            client_key=setting(config, "servicefabric_client_key"))
            else:
                opts.update(username=setting(config, "%s_username" % provider),
                            password=setting(config, "%s_password" % provider))
            opts.update(library=setting(config, "vsphere_library", "images"),
                        backup_storage=setting(config, "zstack_backup_storage", "bs"))
            targets[provider] = Target(provider, endpoint, **opts)
            continue
        if emulator is None:
            emulator = emulator_factory()
        creds = emulator.credentials.get(provider, {})
        targets[provider] = Target(provider, emulator.url, emulator=emulator, username=creds.get("username"),
                                   password=creds.get("password"), library="images", backup_storage="bs")
    return targets


@pytest.fixture(scope="session")
def imagestore_emulator(request, tmp_path_factory):
    """The emulator, started once per test session on 127.0.0.1 (free port) in a temporary data dir."""
    from imagestore_emulator.process import EmulatorProcess
    data_dir = tmp_path_factory.mktemp("imagestore-emulator")
    extra = (setting(request.config, "emulator_args") or "").split()
    emulator = EmulatorProcess(data_dir, extra_args=extra).start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def imagestore_targets(request):
    """Provider name -> Target: the configured real system, else the session's emulator."""
    return resolve_targets(request.config, lambda: request.getfixturevalue("imagestore_emulator"))


@pytest.fixture
def imagestore_target(imagestore_targets):
    """Factory: ``imagestore_target("servicefabric")`` gives that provider's Target."""
    def get(provider):
        return imagestore_targets[provider]
    return get


@pytest.fixture
def imagestore_partial_upload(imagestore_targets):
    """Factory of half-finished uploads, made through the collection's own client.

    ``imagestore_partial_upload("servicefabric", src, path="images/a.bin", fraction=0.5)`` sends
    that fraction of ``src`` (from the start) into a session and leaves it open; the result says the
    session id and which bytes were sent. Every session it made is removed after the test,
    whatever the test did.
    """
    from pytest_imagestore.partial import PartialUploads
    uploads = PartialUploads(imagestore_targets)
    yield uploads
    uploads.cleanup()


@pytest.fixture
def imagestore_workdir():
    """A temporary folder for generated images, removed after the test."""
    with tempfile.TemporaryDirectory(prefix="imagestore-") as d:
        yield d
