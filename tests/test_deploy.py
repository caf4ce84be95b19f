"""deploy/ files stay in step with the CLI."""
import json
import re
import shlex
from pathlib import Path

import yaml

from learnsieve.cli import parser

ROOT = Path(__file__).resolve().parents[1]


def curate_flags():
    sub = parser()._subparsers._group_actions[0].choices["curate"]
    return {opt for action in sub._actions for opt in action.option_strings}


def test_template_parameters_are_curate_flags():
    meta = json.loads((ROOT / "deploy/dataflow/metadata.json").read_text())
    flags = curate_flags()
    for param in meta["parameters"]:
        assert f"--{param['name']}" in flags, param["name"]


def test_cronjob_command_parses():
    docs = list(yaml.safe_load_all((ROOT / "deploy/k8s/cronjob.yaml").read_text()))
    job = next(d for d in docs if d["kind"] == "CronJob")
    container = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    cmd = shlex.split(re.sub(r'"\$[A-Z_]+"', "X", container["args"][0]))
    assert cmd[:2] == ["learnsieve", "curate"]
    args, beam_args = parser().parse_known_args(cmd[1:])
    assert args.incremental and args.input == "X"
    assert beam_args[:2] == ["--runner", "PortableRunner"]


def test_run_script_flags_are_known():
    text = (ROOT / "deploy/dataflow/run.sh").read_text()
    used = set(re.findall(r"^\s+(--[a-z_]+)", text, flags=re.M))
    beam_flags = {"--runner", "--project", "--region", "--temp_location", "--sdk_container_image",
                  "--experiments", "--machine_type", "--dataflow_service_options"}
    assert used - beam_flags <= curate_flags()


def test_launcher_forwards_to_curate(monkeypatch):
    import runpy
    import sys
    seen = {}
    monkeypatch.setattr("learnsieve.cli.main", lambda argv: seen.setdefault("argv", argv) and 0)
    monkeypatch.setattr(sys, "argv", ["launcher.py", "--input=gs://b/x.tar", "--incremental"])
    try:
        runpy.run_path(str(ROOT / "deploy/dataflow/launcher.py"), run_name="__main__")
    except SystemExit:
        pass
    assert seen["argv"] == ["curate", "--input=gs://b/x.tar", "--incremental"]


def test_one_beam_version_for_the_worker_image_and_the_package():
    import re

    import apache_beam
    from packaging.specifiers import SpecifierSet
    docker = (ROOT / "Dockerfile").read_text()
    version = re.search(r"^ARG BEAM_VERSION=(\S+)$", docker, re.M).group(1)
    pins = re.findall(r'"apache-beam>=([^"]+)"', (ROOT / "pyproject.toml").read_text())
    assert pins, "pyproject.toml declares apache-beam"
    assert version in SpecifierSet(">=" + pins[0])
    assert version == apache_beam.__version__  # the image runs the Beam the tests ran
    assert '"apache-beam[gcp]==${BEAM_VERSION}"' in docker  # and installs exactly that one
