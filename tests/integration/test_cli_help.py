"""imagestore-upload's options are the modules' options (derived from the same specs) and its help is their
documentation (read from the same YAML): they cannot drift apart. No store needed."""

import io
import os

import pytest

from ansible_collections.imagestore.upload.plugins.module_utils._registry import PROVIDERS

from imagestore_cli.arguments import COMMANDS, UsageError, build_parser, params_from, password, spec_of
from imagestore_cli.docs import ModuleDoc, render
from imagestore_cli.main import main


def parser():
    return build_parser(PROVIDERS, "test")


def options_of(command):
    sub = parser()._subparsers._group_actions[0].choices[command]
    return sub, dict((a.dest, a) for a in sub._actions)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_module_option_is_a_flag_documented_as_in_the_module(command):
    operation, module = COMMANDS[command]
    spec, _ = spec_of(operation, PROVIDERS)
    doc = ModuleDoc(module)
    _, actions = options_of(command)
    for option, entry in spec.items():
        if option == "password":
            assert "password_file" in actions and "password" not in actions
            assert doc.text("password", set(spec)) in actions["password_file"].help.replace("%%", "%")
            continue
        action = actions[option]
        assert action.option_strings[0] == "--" + option.replace("_", "-")
        assert doc.text(option, set(spec)).split("\n")[0] in action.help.replace("%%", "%"), option
        if entry.get("choices"):
            assert list(action.choices) == list(entry["choices"])
    assert {"check", "json", "quiet"} <= set(actions)


def test_help_reads_like_the_module_docs(capsys):
    assert main(["upload", "--help"]) == 0
    text = capsys.readouterr().out
    doc = ModuleDoc("image_upload")
    assert render(doc.description[1], None)[:60] in " ".join(text.split())
    for group in ("connection options", "transfer options", "Service Fabric options", "vSphere options", "ZStack options"):
        assert group + ":" in text
    assert "$IMAGESTORE_ENDPOINT" in text and "--chunk-size" in text and "exit status:" in text
    assert "O(" not in text and "V(" not in text and "E(" not in text and "M(" not in text


def test_markup_becomes_flags_and_commands():
    options = {"provider", "keep_session_on_failure", "src"}
    assert render("O(src) for O(provider=vsphere), O(keep_session_on_failure=true)", options) == \
        "--src for --provider vsphere, --keep-session-on-failure"
    assert render("see M(imagestore.upload.upload_session_absent) and E(IMAGESTORE_PASSWORD), V(0), C(x)") == \
        "see imagestore-upload absent and $IMAGESTORE_PASSWORD, 0, x"
    assert render("O(ignore:resumed=true) and RV(progress)") == "resumed=true and progress"


def parse(argv, environ=None):
    args = parser().parse_args(argv)
    spec, _ = spec_of(COMMANDS[args.command][0], PROVIDERS)
    return args, params_from(args, spec, environ or {})


def test_environment_fallbacks_and_defaults_as_the_module():
    args, params = parse(["upload", "--src", "x", "--path", "p"], {
        "IMAGESTORE_PROVIDER": "servicefabric", "IMAGESTORE_ENDPOINT": "http://h:1", "IMAGESTORE_VALIDATE_CERTS": "no"})
    assert params["provider"] == "servicefabric" and params["endpoint"] == "http://h:1"
    assert params["validate_certs"] is False and params["parallel"] == 4 and params["progress_interval"] == 30
    args, params = parse(["upload", "--provider", "zstack", "--endpoint", "http://x", "--validate-certs"],
                         {"IMAGESTORE_PROVIDER": "servicefabric", "IMAGESTORE_VALIDATE_CERTS": "no"})
    assert params["provider"] == "zstack" and params["validate_certs"] is True         # the command line wins
    with pytest.raises(UsageError, match=r"--provider \(from \$IMAGESTORE_PROVIDER\): 'nope' is not one of"):
        parse(["upload", "--endpoint", "http://x"], {"IMAGESTORE_PROVIDER": "nope"})
    with pytest.raises(UsageError, match=r"--endpoint is required \(or set \$IMAGESTORE_ENDPOINT\)"):
        parse(["info", "--provider", "servicefabric"])


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_password_from_environment_file_or_prompt_never_the_command_line(tmp_path):
    args, params = parse(["upload", "--provider", "zstack", "--endpoint", "http://x", "--username", "admin"])
    assert password(args, params, {"IMAGESTORE_PASSWORD": "from-env"}, io.StringIO()) == "from-env"
    asked = []
    assert password(args, params, {}, Terminal(), prompt=lambda text: asked.append(text) or "typed") == "typed"
    assert asked == ["Password of admin at http://x: "]
    assert password(args, params, {}, io.StringIO()) is None          # no terminal: no prompt
    secret = tmp_path / "pw"
    secret.write_text("from-file\nsecond line\n")
    args, params = parse(["upload", "--provider", "zstack", "--endpoint", "http://x", "--password-file", str(secret)])
    assert password(args, params, {"IMAGESTORE_PASSWORD": "from-env"}, io.StringIO()) == "from-file"
    args, params = parse(["upload", "--provider", "zstack", "--endpoint", "http://x", "--password", "s3cret"])
    with pytest.raises(UsageError, match="never taken on the command line") as err:
        password(args, params, {}, io.StringIO())
    assert "s3cret" not in str(err.value)
    args, params = parse(["upload", "--provider", "zstack", "--endpoint", "http://x",
                          "--password-file", os.path.join(str(tmp_path), "missing")])
    with pytest.raises(UsageError, match="--password-file .* cannot be read"):
        password(args, params, {}, io.StringIO())
