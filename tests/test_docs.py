"""The docs are true: every learnsieve name that README.md, docs/*.md and the docstrings and
comments of the code mention exists, and every flag they show a ``learnsieve`` command taking is
one its parser knows (issue 20).

Names: a dotted ``learnsieve.x.y``, or ``pipeline.x``, ``models.x`` and ``core.x`` (short for
``learnsieve.pipeline.x``, ``learnsieve.models.x``, ``learnsieve.core.x``), resolves by import and
attribute lookup; a file path (``core/scoring.py``, ``benchmarks/bench_eval.py``) exists; a bare
``` ``name.py`` ``` in backticks is a file somewhere in the tree. Flags: each ``learnsieve SUB``
command line in README.md's code blocks uses flags of SUB (or Beam's pipeline flags, which pass
through), and every other ``--flag`` in README.md or in cli.py's text is a flag of some
subcommand or of Beam. What is not learnsieve's (another tool's flags, a logger name) is listed
in ``NOT_OURS`` with why.
"""
from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import io
import re
import shlex
import sys
import tokenize
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
CODE = ("learnsieve", "pipeline", "models", "benchmarks", "tests", "deploy")
PREFIXES = {"learnsieve": "learnsieve", "pipeline": "learnsieve.pipeline", "models": "learnsieve.models",
            "core": "learnsieve.core"}
DOTTED = re.compile(r"(?<![\w.\-/])\b(learnsieve|pipeline|models|core)((?:\.[A-Za-z_]\w*)+)")
PATH = re.compile(r"(?<![\w./\-:])((?:[A-Za-z_][\w\-]*/)+[A-Za-z_]\w*\.py)\b")
BARE_PY = re.compile(r"`+([A-Za-z_]\w*\.py)`+")
FLAG = re.compile(r"(?<![\w\-])--[a-z][a-z0-9_]*(?:-[a-z0-9_]+)*")

# mentioned, and rightly so, but not learnsieve names / learnsieve flags
NOT_OURS = {
    # other programs' flags, in README prose about them: open_clip's trainer, dask, pip
    "--train-data": "open_clip_train.main", "--train-num-samples": "open_clip_train.main",
    "--dataset-type": "open_clip_train.main", "--epochs": "open_clip_train.main",
    "--pretrained": "open_clip_train.main", "--batch-size": "open_clip_train.main",
    "--name": "open_clip_train.main",
    "--nworkers": "dask worker", "--nthreads": "dask worker", "--port": "dask scheduler",
    "--overwirte": "README quotes the typo a flag check names",
    "--subset_file": "DataComp's resharder, which reads export --uids' file",
    # key paths of JSON learnsieve writes, which read like module paths
    "learnsieve.scores": "an output shard's KEY.json: its learnsieve part's scores (core.records.output_json)",
    # other packages' files, named where learnsieve follows or fixes them
    "_registry.py": "timm's", "_factory.py": "timm's", "direct/executor.py": "Beam's runners/direct/",
}


def doc_files() -> List[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def code_files() -> List[Path]:
    """Every Python file of the tree but this one (whose docstring and tests plant bad names)."""
    return [p for folder in CODE for p in sorted((ROOT / folder).rglob("*.py"))
            if "__pycache__" not in p.parts and p.resolve() != Path(__file__).resolve()]


def code_text(path: Path) -> Iterator[Tuple[int, str]]:
    """(line, text) of every docstring and comment of a Python file."""
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                yield first.lineno, first.value.value
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            yield tok.start[0], tok.string


def doc_text(path: Path) -> Iterator[Tuple[int, str]]:
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        yield i, line


def texts() -> Iterator[Tuple[str, str]]:
    """(where, text) of everything checked: docs line by line, docstrings and comments."""
    for path in doc_files():
        for line, text in doc_text(path):
            yield f"{path.relative_to(ROOT)}:{line}", text
    for path in code_files():
        for line, text in code_text(path):
            yield f"{path.relative_to(ROOT)}:{line}", text


def references() -> Dict[str, Set[str]]:
    """{dotted learnsieve name: where it is mentioned}."""
    out: Dict[str, Set[str]] = {}
    for where, text in texts():
        for m in DOTTED.finditer(text):
            parts = m.group(2).lstrip(".").split(".")
            if parts[-1] in ("py", "md", "yaml", "json", "tar", "txt", "parquet", "jsonl", "png", "html"):
                continue  # a file name (``models.py``, ``learnsieve.yaml``): PATH's business
            name = ".".join([PREFIXES[m.group(1)], *parts])
            out.setdefault(name, set()).add(where)
    return out


def resolve(dotted: str) -> str:
    """'' when ``dotted`` is an importable module or an attribute chain of one, else why not."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        module = ".".join(parts[:i])
        try:
            obj = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name and (module == exc.name or module.startswith(exc.name + ".")):
                continue  # that module does not exist: try its parent
            return _resolve_unimportable(module, parts[i:], exc.name)
        for j, attr in enumerate(parts[i:], i):
            if not hasattr(obj, attr):
                return f"{'.'.join(parts[:j])} has no {attr}"
            obj = getattr(obj, attr)
        return ""
    return "no such module"


def _resolve_unimportable(module: str, attrs: List[str], missing: str) -> str:
    """A module that exists but needs an optional package not installed here (open_clip, dask):
    its source is read instead; the first attribute must be defined at its top level."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return f"importing {module} needs {missing}"
    if not attrs:
        return ""
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return "" if attrs[0] in names else f"{module} has no {attrs[0]}"


def test_every_dotted_name_resolves():
    refs = references()
    assert len(refs) > 50  # the collection works (README, docs and docstrings name many)
    ours = [n for n in sorted(refs) if not any(n == k or n.startswith(k + ".") for k in NOT_OURS)]
    bad = {name: why for name in ours if (why := resolve(name))}
    assert not bad, "references to names that do not exist:\n" + "\n".join(
        f"  {name} ({why}) in {', '.join(sorted(refs[name]))}" for name, why in bad.items())


def _files_by_name() -> Dict[str, List[Path]]:
    out: Dict[str, List[Path]] = {}
    for p in code_files() + [p for p in (ROOT / "configs").rglob("*.py")]:
        out.setdefault(p.name, []).append(p)
    return out


def path_exists(rel: str) -> bool:
    """A path as the docs write it: from the repository root, inside learnsieve/ (``core/x.py``,
    ``train/clip.py``: the package's folders are named without it), as the installed package maps
    it (``learnsieve/pipeline/x.py`` is ``pipeline/x.py``), or in another installed package
    (``apache_beam/runners/...``)."""
    mapped = re.sub(r"^learnsieve/(pipeline|models|configs)/", r"\1/", rel)
    if (ROOT / mapped).is_file() or (ROOT / "learnsieve" / mapped).is_file():
        return True
    top = rel.split("/", 1)[0]
    spec = importlib.util.find_spec(top) if top.isidentifier() and top not in CODE else None
    return bool(spec and spec.submodule_search_locations
                and any((Path(p).parent / rel).is_file() for p in spec.submodule_search_locations))


def test_every_file_named_exists():
    by_name = _files_by_name()
    bad: Dict[str, Set[str]] = {}
    for where, text in texts():
        for m in PATH.finditer(text):
            if not path_exists(m.group(1)) and m.group(1) not in NOT_OURS:
                bad.setdefault(m.group(1), set()).add(where)
        for m in BARE_PY.finditer(text):
            if m.group(1) not in by_name and m.group(1) not in NOT_OURS:
                bad.setdefault(m.group(1), set()).add(where)
    assert not bad, "files named that do not exist:\n" + "\n".join(
        f"  {name} in {', '.join(sorted(w))}" for name, w in sorted(bad.items()))


# ------------------------------------------------------------------------------------- flags

def subcommand_flags() -> Dict[str, Set[str]]:
    """{subcommand: its flags} of ``learnsieve.cli.parser()``; '' holds the top level's, and
    'online.open_clip_train' those of ``python -m learnsieve.online.open_clip_train``."""
    from learnsieve.cli import parser
    from learnsieve.online.open_clip_train import online_parser
    ap = parser()
    out = {"": {o for a in ap._actions for o in a.option_strings},
           "online.open_clip_train": {o for a in online_parser()._actions for o in a.option_strings}}
    for action in ap._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out[name] = {o for a in sub._actions for o in a.option_strings}
    return out


def beam_flags() -> Set[str]:
    """Beam's pipeline flags (the Dask runner's included), which the CLI passes through."""
    from learnsieve.flags import beam_flag_parser
    try:
        import learnsieve.pipeline.dask_runner  # noqa: F401  (registers the Dask runner's options)
    except ImportError:
        pass
    return {o for a in beam_flag_parser()._actions for o in a.option_strings}


def commands(markdown: str) -> Iterator[List[str]]:
    """The words of each shell command in a markdown file's fenced code blocks (continuation
    lines and multi-line quotes joined, comments dropped, split at ``&&``, ``;``, ``|``, ``&``)."""
    lines: List[str] = []
    inside = False
    for line in markdown.splitlines():
        if line.strip().startswith("```"):
            inside = not inside
        elif inside:
            lines.append(line)
    buf = ""
    for line in lines:
        buf = f"{buf}\n{line}" if buf else line
        if buf.endswith("\\"):
            buf = buf[:-1]
            continue
        lex = shlex.shlex(buf, posix=True, punctuation_chars=True)
        lex.whitespace_split = True  # words as the shell splits them (with the punctuation apart)
        try:
            words = list(lex)
        except ValueError:  # an open quote: the command goes on on the next line
            continue
        buf = ""
        command: List[str] = []
        for w in words + [";"]:
            if w and set(w) <= set("&;|()"):
                if command:
                    yield command
                command = []
            else:
                command.append(w)


def learnsieve_commands(markdown: str) -> Iterator[Tuple[str, List[str]]]:
    """(subcommand, flags) of each ``learnsieve SUB ...`` command of ``markdown``'s code blocks."""
    for words in commands(markdown):
        for i, w in enumerate(words[:-1]):
            if w == "learnsieve" or w.endswith("/learnsieve"):
                flags = [x.split("=", 1)[0] for x in words[i + 1:] if FLAG.fullmatch(x.split("=", 1)[0])]
                yield words[i + 1], flags
                break


def test_readme_commands_use_their_subcommands_flags():
    subs, beam = subcommand_flags(), beam_flags()
    commands = list(learnsieve_commands((ROOT / "README.md").read_text(encoding="utf-8")))
    assert len(commands) >= 5  # the parsing works: the README shows several commands
    bad = []
    for sub, flags in commands:
        if sub.startswith("-"):  # learnsieve --version
            bad += [f"learnsieve {f}" for f in [sub, *flags] if f not in subs[""]]
            continue
        if sub not in subs:
            bad.append(f"learnsieve {sub}: no such subcommand")
            continue
        bad += [f"learnsieve {sub} {f}" for f in flags if f not in subs[sub] | subs[""] | beam]
    assert not bad, f"README commands with flags their parser does not know: {bad}"


def test_every_flag_mentioned_exists():
    subs, beam = subcommand_flags(), beam_flags()
    known = set().union(*subs.values()) | beam | set(NOT_OURS)
    cli = ROOT / "learnsieve" / "cli.py"
    sources = [("README.md", (ROOT / "README.md").read_text(encoding="utf-8"))]
    sources += [(f"learnsieve/cli.py:{line}", text) for line, text in code_text(cli)]
    tree = ast.parse(cli.read_text(encoding="utf-8"))  # and its strings: help texts, messages
    sources += [(f"learnsieve/cli.py:{n.lineno}", n.value) for n in ast.walk(tree)
                if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    bad = sorted({f"{f} ({where})" for where, text in sources for f in FLAG.findall(text) if f not in known})
    assert not bad, f"flags mentioned that no learnsieve subcommand (nor Beam) has: {bad}"


# -------------------------------------------------------------------- the check checks

@pytest.mark.parametrize("name", ["learnsieve.core.scoring.score_decoded", "learnsieve.pipeline.run.run",
                                  "learnsieve.models.zoo.ls_clip_test", "learnsieve.core.records.Scored.vector"])
def test_resolve_accepts_real_names(name):
    assert resolve(name) == ""


@pytest.mark.parametrize("name", ["learnsieve.pipeline.realdata.build_flickr", "learnsieve.core.scoring.nope",
                                  "learnsieve.nothing"])
def test_resolve_refuses_planted_names(name):
    assert resolve(name) != ""


def test_collection_maps_the_short_prefixes(tmp_path, monkeypatch):
    doc = tmp_path / "README.md"
    doc.write_text("see ``pipeline.realdata.build_flickr``, `core.scoring.score_decoded` and models.zoo; "
                   "not apache_beam.pipeline.Pipeline, nor train.proxy_model, nor `models.py`.\n"
                   "```bash\nlearnsieve curate --input x \\\n  --outptu y --runner DaskRunner  # --not-this\n```\n")
    me = sys.modules[__name__]
    monkeypatch.setattr(me, "doc_files", lambda: [doc])
    monkeypatch.setattr(me, "code_files", lambda: [])
    monkeypatch.setattr(me, "ROOT", tmp_path)
    assert set(references()) == {"learnsieve.pipeline.realdata.build_flickr", "learnsieve.core.scoring.score_decoded",
                                 "learnsieve.models.zoo"}
    assert list(learnsieve_commands(doc.read_text())) == [("curate", ["--input", "--outptu", "--runner"])]
