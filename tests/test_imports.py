"""No import cycles among learnsieve's modules, function-level imports included: a cycle hides
an order dependence (whichever module is imported first sees the other half-initialised) and
means two modules are one job cut in two (issue 20)."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the design card's folders, as pyproject.toml's package-dir maps them into the one import name
FOLDERS = {"learnsieve": "learnsieve", "pipeline": "learnsieve.pipeline", "models": "learnsieve.models"}


def modules() -> dict:
    out = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            if folder == "learnsieve" and rel.parts[0] in ("pipeline", "models"):
                continue
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([package, *parts])] = path
    return out


def imported(name: str, path: Path, known: dict) -> set:
    """learnsieve modules ``name`` imports anywhere in its file (the closest known module of
    each dotted name, so ``from a.b import c`` counts ``a.b.c`` when it is a module, else ``a.b``)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([node.module] if node.module else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    out = set()
    for dotted in found:
        while dotted and dotted not in known:
            dotted = dotted.rpartition(".")[0]
        if dotted and dotted != name:
            out.add(dotted)
    return out


def cycles(graph: dict) -> list:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on, stack, comps, counter = {}, {}, set(), [], [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    comps.append(sorted(comp))
    return comps


def test_no_import_cycles():
    known = modules()
    assert "learnsieve.pipeline.run" in known and "learnsieve.models.checkpoint" in known
    graph = {name: imported(name, path, known) for name, path in known.items()}
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_models_import_nothing_of_the_rest():
    known = modules()
    for name, path in known.items():
        if name.startswith("learnsieve.models"):
            outside = {m for m in imported(name, path, known) if not m.startswith("learnsieve.models")}
            assert not outside, (name, outside)


def test_architecture_lists_every_module():
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    missing = [str(path.relative_to(ROOT)) for path in modules().values()
               if path.name not in ("__init__.py", "__main__.py") and f"`{path.name}`" not in text
               and f"{path.name}`" not in text and f"/{path.name}" not in text]
    assert not missing, f"docs/ARCHITECTURE.md does not name {missing}"


def reachable(graph: dict, start: str) -> set:
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(graph.get(m, ()))
    return seen


# the CLI layer: argument parsing, flag checks, the dry run, the demo, export, and the learner-side
# commands; the Beam job is started from a plan (core/plan.py) and never reaches these
CLI_LAYER = ("learnsieve.cli", "learnsieve.flags", "learnsieve.dry_run", "learnsieve.demo", "learnsieve.export",
             "learnsieve.evaluate", "learnsieve.train")


def test_the_beam_job_does_not_reach_the_cli_layer():
    known = modules()
    graph = {name: imported(name, path, known) for name, path in known.items()}
    found = reachable(graph, "learnsieve.pipeline.run")
    assert "learnsieve.core.plan" in found and "learnsieve.pipeline.write" in found
    bad = sorted(m for m in found if m.startswith(CLI_LAYER))
    assert not bad, f"learnsieve.pipeline.run reaches {bad}"


def test_no_private_name_crosses_a_module_boundary():
    """A name a module imports from another learnsieve module is public there (no ``_x``)."""
    found = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("learnsieve"):
                found += [f"{name}: {node.module}.{a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
    assert not found, found
