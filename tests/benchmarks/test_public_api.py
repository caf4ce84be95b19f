"""Benchmarks use learnsieve's public API only: no file under benchmarks/ imports a private name
(a leading underscore) from learnsieve, or reaches one through an imported learnsieve module. A
helper a benchmark needs is made public in its module, with a docstring."""
from __future__ import annotations

import ast
import os
from typing import List

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCHMARKS = os.path.join(ROOT, "benchmarks")


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(source: str) -> List[str]:
    """``module.name`` of every private learnsieve name ``source`` imports or reads off an
    imported learnsieve module."""
    tree = ast.parse(source)
    found: List[str] = []
    modules = {}  # local name -> the learnsieve module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "learnsieve":
            if any(_private(p) for p in node.module.split(".")):
                found.append(node.module)
            for alias in node.names:
                if _private(alias.name):
                    found.append(f"{node.module}.{alias.name}")
                else:
                    modules[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] != "learnsieve":
                    continue
                if any(_private(p) for p in alias.name.split(".")):
                    found.append(alias.name)
                modules[alias.asname or alias.name.split(".")[0]] = alias.asname and alias.name or "learnsieve"
    for node in ast.walk(tree):  # a private attribute of an imported learnsieve module (or of learnsieve)
        if isinstance(node, ast.Attribute) and _private(node.attr):
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in modules:
                found.append(f"{ast.unparse(node.value)}.{node.attr}")
    return found


def test_no_benchmark_imports_a_private_learnsieve_name():
    bad = {}
    for name in sorted(os.listdir(BENCHMARKS)):
        if name.endswith(".py"):
            with open(os.path.join(BENCHMARKS, name)) as f:
                uses = private_uses(f.read())
            if uses:
                bad[name] = uses
    assert not bad, f"benchmarks reach private learnsieve names (make them public, with a docstring): {bad}"


def test_the_check_sees_each_way_in():
    assert private_uses("from learnsieve.evaluate.arms import _learner_flops") == [
        "learnsieve.evaluate.arms._learner_flops"]
    assert private_uses("from learnsieve.core._x import y") == ["learnsieve.core._x"]
    assert private_uses("import learnsieve.core.scoring as sc\nsc._proxy_pass()") == ["sc._proxy_pass"]
    assert private_uses("from learnsieve.core import scoring\nscoring._proxy_pass") == ["scoring._proxy_pass"]
    assert private_uses("import learnsieve.core.scoring\nlearnsieve.core.scoring._proxy_pass") == [
        "learnsieve.core.scoring._proxy_pass"]
    # public names, dunders, and private names of other packages or of the script itself are fine
    assert private_uses("from learnsieve.core.scoring import score_decoded\nimport learnsieve\n"
                        "learnsieve.__version__\nimport os\nos._exit\n_local = 1\nx._y") == []
