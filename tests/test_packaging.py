"""One package, one house: the wheel's only top-level name is learnsieve, models never imports
Beam, and a user's own top-level models/ or pipeline/ packages cannot shadow ours."""
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_importing_models_loads_no_apache_beam():
    code = ("import sys, learnsieve.models, learnsieve.models.factory, learnsieve.core.scoring; "
            "import learnsieve.models.open_clip_adapter; "
            "learnsieve.models.create_model('ls_clip_test'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'apache_beam'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_config_is_listed_beside_a_users_own_models_and_pipeline_packages(tmp_path):
    for name in ("models", "pipeline"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("raise ImportError('the user package was imported')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "learnsieve", "models"], capture_output=True, text=True,
                         env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    for name in ("ls_clip_test", "ls_clip_lit", "ls_cls_test", "ls_cls_small"):
        assert name in out.stdout


def test_create_model_builds_either_config_type():
    from learnsieve.models import Classifier, DualEncoder, create_model
    assert isinstance(create_model("ls_clip_test"), DualEncoder)
    assert isinstance(create_model("ls_cls_test"), Classifier)


def test_version_flag():
    import learnsieve
    out = subprocess.run([sys.executable, "-m", "learnsieve", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and learnsieve.__version__ in out.stdout


@pytest.mark.slow
def test_wheel_holds_one_top_level_package_with_configs(tmp_path):
    import shutil
    src = tmp_path / "src"  # a copy: setuptools' in-tree build/ must not leak into the checkout
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("learnsieve", "pipeline", "models", "configs"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(src)],
                   check=True, capture_output=True)
    wheel = next(tmp_path.glob("learnsieve-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"learnsieve"}
    for path in ("learnsieve/pipeline/run.py", "learnsieve/models/registry.py", "learnsieve/core/tar.py",
                 "learnsieve/configs/default.yaml", "learnsieve/cli.py"):
        assert path in names
    # extras named as the metadata spells them, so that every pip finds them (pip 23.2 refuses
    # '.[open_clip]' when the built metadata says 'open-clip')
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    extras = {line.split(":", 1)[1].strip() for line in zipfile.ZipFile(wheel).read(meta).decode().splitlines()
              if line.startswith("Provides-Extra:")}
    assert {"open-clip", "open-clip-train", "dask", "gcp", "test"} <= extras
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    assert declared == extras, "an extra whose name pip normalises differs from its metadata"
