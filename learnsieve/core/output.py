"""Who owns the output folder, who is writing into it, and what may be deleted there. No Beam.

learnsieve deletes or overwrites only files it wrote:

- **Marker** ``OUTPUT/.learnsieve-output`` (JSON: marker version, learnsieve version, when and by
  which command and inputs the folder was claimed, and ``foreign``: what was already in it).
  A missing or empty folder is claimed by writing it. A non-empty folder without it is refused
  unless ``--overwrite``, and even then only learnsieve's own names are removed.
- **Own names** (``own_names``): ``NNNNN.tar`` listed in ``sizes.json`` or the manifest
  (in a marked folder also any ``NNNNN.tar`` / ``NNNNN_stats.json`` that was not there before
  learnsieve claimed it: an interrupted finalisation renames shards before writing sizes.json),
  their ``NNNNN_stats.json``, ``sizes.json``, ``stats.json``, ``stats.failed.json``,
  ``manifest.parquet``, ``shardindex.json``, ``report.html``, ``rejected/rejected.jsonl``
  (``rejected/`` only if then empty), ``_tmp/``,
  ``_manifest/`` and, with ``--overwrite``, ``_scores/``. Paths are used literally, never as glob
  patterns; a folder is listed with ``ls``, never globbed.
- **Lock** ``OUTPUT/.learnsieve-lock`` (JSON: pid, host, start time, command), created
  atomically (``O_EXCL``; on fsspec remotes a best-effort exists + write + read back) before
  anything in the folder changes, removed when the run ends, also when it fails. A second run
  into the same folder is refused naming the lock; a lock whose pid is dead on this host is
  taken over.
- The output may not be a file, the folder of an input shard, or a place where the input
  pattern would match what learnsieve writes (``in/**/*.tar`` with ``--output in/out``).
"""
from __future__ import annotations

import datetime
import errno
import json
import os
import re
import shutil
import socket
import sys
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Set

import braceexpand
import fsspec
from fsspec.implementations.local import LocalFileSystem

from learnsieve.core.layout import DATASET_CARD, MANIFEST_PARTS, REPORT, TMP, WIDS_INDEX
from learnsieve.core.paths import InputError, join

MARKER = ".learnsieve-output"
LOCK = ".learnsieve-lock"
MARKER_VERSION = 1
SCORES = "_scores"  # = score_file.CACHE_DIR (not imported: score_file imports pyarrow)
FAILED_STATS = "stats.failed.json"  # stats.json of a run that failed its max_bad_fraction check
OWN_FILES = ("sizes.json", "stats.json", FAILED_STATS, "manifest.parquet", WIDS_INDEX, REPORT)
# README.md (the HF dataset card) is learnsieve's only while it holds layout.CARD_MARK: rewritten
# then, never removed; a README.md without the mark is never touched (pipeline/write.py)
OWN_DIRS = (TMP, MANIFEST_PARTS)
REJECTED = "rejected"
REJECTED_FILE = "rejected/rejected.jsonl"
OWN_TAR = re.compile(r"^\d{5,}\.tar$")
OWN_SHARD_STATS = re.compile(r"^\d{5,}_stats\.json$")
# what learnsieve writes, relative to the output: the input pattern must match none of it
WRITES = ("00000.tar", "00000_stats.json", "sizes.json", "stats.json", "manifest.parquet",
          REJECTED_FILE, f"{TMP}/g000000-00000.tar", f"{TMP}/g000000-00000.tar.partial",
          f"{MANIFEST_PARTS}/000000.parquet", f"{SCORES}/shard-0123456789abcdef.parquet", MARKER, LOCK,
          WIDS_INDEX, REPORT, DATASET_CARD)
_GLOB = re.compile(r"[*?\[]")
_HELD: Dict[str, str] = {}  # output root -> token of the lock this process holds


class OutputError(InputError):
    """A problem with --output: a one-line message (the CLI exits with status 2)."""


@dataclass
class Output:
    url: str
    fs: Any
    root: str
    local: bool
    exists: bool = False
    entries: List[str] = field(default_factory=list)   # names in the folder, without marker/lock
    marker: Optional[dict] = None                      # the parsed marker when the folder is ours

    @property
    def owned(self) -> bool:
        return self.marker is not None

    def path(self, rel: str) -> str:
        return join(self.root, rel)


def open_output(url: str) -> Output:
    fs, root = fsspec.core.url_to_fs(url)
    return Output(url, fs, root.rstrip("/") or root, isinstance(fs, LocalFileSystem))


def _protocol(fs) -> str:
    proto = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return "file" if proto in ("file", "local") else proto


def _resolve(fs, path: str) -> str:
    return os.path.realpath(path) if isinstance(fs, LocalFileSystem) else path.rstrip("/")


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """fsspec glob semantics as a regex: ``*`` and ``?`` stay within a folder, ``**`` crosses."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and pattern.find("]", i + 2) != -1:
            j = pattern.find("]", i + 2)
            body = pattern[i + 1:j]
            body = "^" + body[1:] if body.startswith("!") else body
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = j + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def _resolve_pattern(fs, path: str) -> str:
    """A glob with its literal leading folders resolved (symlinks, ``..``) like the output."""
    parts = path.split("/")
    k = next(i for i, p in enumerate(parts) if _GLOB.search(p))
    prefix = "/".join(parts[:k]) or "/"
    return _resolve(fs, prefix).rstrip("/") + "/" + "/".join(parts[k:])


def check_not_input(out: Output, pattern: str, shards: Sequence[str]) -> None:
    """The output may not be an input shard's folder, nor where the input pattern matches what
    learnsieve writes (its shards would be read back as input, and clean-up could hit inputs)."""
    proto = _protocol(out.fs)
    where = _resolve(out.fs, out.root)
    for url in shards:
        fs, p = fsspec.core.url_to_fs(url)
        if _protocol(fs) == proto and os.path.dirname(_resolve(fs, p)) == where:
            raise OutputError(f"output {out.url} is the folder of the input shard {url}: learnsieve "
                              f"would write its shards among the inputs; choose another --output")
    for part in (pattern or "").split("::"):
        for expanded in braceexpand.braceexpand(part.strip()):
            fs, p = fsspec.core.url_to_fs(expanded)
            if _protocol(fs) != proto or not _GLOB.search(p):
                continue
            regex = _glob_regex(_resolve_pattern(fs, p))
            hit = next((w for w in WRITES if regex.fullmatch(f"{where}/{w}")), None)
            if hit:
                raise OutputError(f"output {out.url} lies where the input pattern {expanded} matches "
                                  f"what learnsieve writes there (e.g. {out.url.rstrip('/')}/{hit}): "
                                  f"choose an --output outside the input folders")


def _list(out: Output) -> List[str]:
    """Names in the output folder (literally: os.listdir / fs.ls, never a glob)."""
    if out.local:
        return sorted(os.listdir(out.root))
    return sorted(os.path.basename(p.rstrip("/")) for p in out.fs.ls(out.root, detail=False)
                  if p.rstrip("/") != out.root)


def _read_json(out: Output, rel: str) -> Any:
    try:
        with out.fs.open(out.path(rel), "r") as f:
            return json.load(f)
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def refuse_file_on_path(root: str, url: str, name: str, flag: str) -> None:
    """One-line ``OutputError`` when the local folder ``root`` (the user's ``url``) is a file or
    lies under one: the nearest existing path on the way up must be a folder."""
    probe = root
    while not os.path.lexists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    if os.path.lexists(probe) and not os.path.isdir(probe):
        what = "is a file" if probe == root else f"lies under {probe}, which is a file"
        raise OutputError(f"{name} {url} {what}, not a folder: pass a folder to {flag}")


def inspect_output(url: str, pattern: str, shards: Sequence[str], overwrite: bool = False) -> Output:
    """What is at ``url`` and whether this run may write there; writes nothing. One-line
    ``OutputError`` for a file, an input folder, or a non-empty folder learnsieve does not own
    (unless ``overwrite``)."""
    out = open_output(url)
    if out.local:
        refuse_file_on_path(out.root, url, "output", "--output")
    else:
        if _GLOB.search(out.root):  # fsspec's mv / rm on remotes expand them as patterns
            raise OutputError(f"output {url}: glob characters (* ? [) in a remote output path are "
                              f"not supported; rename the folder")
        if out.fs.exists(out.root) and not out.fs.isdir(out.root):
            raise OutputError(f"output {url} is a file, not a folder: pass a folder to --output")
    check_not_input(out, pattern, shards)
    out.exists = out.fs.isdir(out.root)
    if not out.exists:
        return out
    names = _list(out)
    out.entries = [n for n in names if n not in (LOCK, MARKER, MARKER + ".partial")]
    if MARKER in names:
        marker = _read_json(out, MARKER)
        if isinstance(marker, dict) and isinstance(marker.get("version"), int):
            if marker["version"] > MARKER_VERSION:
                raise OutputError(f"output {url} was written by a newer learnsieve (marker version "
                                  f"{marker['version']}); use that version or another --output")
            out.marker = marker
    if out.entries and not out.owned and not overwrite:
        raise OutputError(
            f"output {url} is not empty and was not written by learnsieve (no {MARKER} in it): "
            f"choose another --output, or pass --overwrite to replace only learnsieve's own files "
            f"there (nothing else is touched)")
    if out.entries and not out.owned:
        if not out.owned:
            dirs = [d for d in OWN_DIRS + (SCORES,) if d in out.entries]
            if dirs:
                raise OutputError(f"output {url} holds {dirs[0]}/, which learnsieve did not write but "
                                  f"would write into: move it away or choose another --output")
        ours = set(own_names(out, scores=True))
        clash = [n for n in out.entries if (OWN_TAR.match(n) or OWN_SHARD_STATS.match(n)) and n not in ours]
        if clash:
            raise OutputError(f"output {url} holds {clash[0]}, which learnsieve did not write (it is "
                              f"not in a sizes.json or manifest there) but would overwrite: move it "
                              f"away or choose another --output")
    return out


def own_names(out: Output, scores: bool) -> List[str]:
    """Names under the output that learnsieve wrote and may remove (see the module docstring)."""
    foreign: Set[str] = set((out.marker or {}).get("foreign") or ())
    names: Set[str] = set()
    tars: Set[str] = set()
    if out.owned:  # in a folder learnsieve did not mark, no sizes.json or manifest is trusted
        sizes = _read_json(out, "sizes.json")
        tars = set(sizes) if isinstance(sizes, dict) else set()
        if not tars and "manifest.parquet" in out.entries:
            tars = _manifest_shards(out)
    if out.owned:
        tars |= {n for n in out.entries if OWN_TAR.match(n)}
        names |= {n for n in out.entries if OWN_SHARD_STATS.match(n)}
    for t in tars:
        if isinstance(t, str) and OWN_TAR.match(t):
            names |= {t, t[:-len(".tar")] + "_stats.json"}
    names |= set(OWN_FILES)
    if out.owned:  # folders are removed whole: only in a folder learnsieve marked
        names |= set(OWN_DIRS) | ({SCORES} if scores else set())
    names = {n for n in names if n in out.entries and n not in foreign}
    if REJECTED in out.entries and out.fs.exists(out.path(REJECTED_FILE)):
        names.add(REJECTED_FILE)
    return sorted(names)


def _manifest_shards(out: Output) -> Set[str]:
    try:
        import pyarrow.parquet as pq
        with out.fs.open(out.path("manifest.parquet"), "rb") as f:
            column = pq.read_table(f, columns=["output_shard"]).column("output_shard").to_pylist()
        return {c for c in column if c}
    except Exception:
        return set()


def _remove(out: Output, rel: str) -> None:
    """Remove one file or folder of the output, by its literal path."""
    path = out.path(rel)
    if out.local:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)
        return
    fs = out.fs
    if not fs.exists(path):
        return
    if fs.isdir(path):
        for f in fs.find(path):
            fs.rm_file(f)
        try:
            fs.rmdir(path)
        except (OSError, NotImplementedError):
            pass
    else:
        fs.rm_file(path)


def _rmdir_if_empty(out: Output, rel: str) -> None:
    path = out.path(rel)
    try:
        if out.local:
            if os.path.isdir(path) and not os.listdir(path):
                os.rmdir(path)
        elif out.fs.isdir(path) and not out.fs.ls(path, detail=False):
            out.fs.rmdir(path)
    except (OSError, NotImplementedError):
        pass


def clean(out: Output, scores: bool) -> List[str]:
    """Remove what an earlier run wrote (``scores``: the score files too); returns the names."""
    removed = own_names(out, scores)
    for rel in removed:
        _remove(out, rel)
    if REJECTED_FILE in removed and REJECTED not in set((out.marker or {}).get("foreign") or ()):
        _rmdir_if_empty(out, REJECTED)
    return removed


# --- lock ---------------------------------------------------------------------------------

def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped) is not running
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _stale(held: Optional[dict]) -> bool:
    """A lock left by a process of this host that is no longer running. Our own pid with a token
    this process does not hold is stale too: a restarted container (same hostname, a fresh pid
    namespace) often gets the pid its killed predecessor had."""
    if not (isinstance(held, dict) and held.get("host") == socket.gethostname()
            and isinstance(held.get("pid"), int)):
        return False
    if held["pid"] == os.getpid():
        return held.get("token") not in _HELD.values()
    return not _pid_alive(held["pid"])


def _held_message(out: Output, held: Optional[dict]) -> str:
    lock = out.path(LOCK) if out.local else f"{out.url.rstrip('/')}/{LOCK}"
    if isinstance(held, dict):
        host = "this host" if held.get("host") == socket.gethostname() else f"host {held.get('host')}"
        who = f"pid {held.get('pid')} on {host}, started {held.get('started')}"
    else:
        who = "an unreadable lock"
    return (f"output {out.url} is in use by another learnsieve run ({who}; lock {lock}): wait for "
            f"it to finish, or remove {lock} if no run is active")


def check_lock(out: Output) -> None:
    """What ``acquire_lock`` would refuse, read-only (the dry run): ``OutputError`` when another
    live run holds the folder's lock; a stale lock (its process is gone) would be taken over."""
    if not out.exists or not out.fs.exists(out.path(LOCK)):
        return
    held = _read_json(out, LOCK)
    if not _stale(held):
        raise OutputError(_held_message(out, held))


def acquire_lock(out: Output) -> str:
    """Create the lock (the folder must exist); returns its token. ``OutputError`` if held."""
    info = {"pid": os.getpid(), "host": socket.gethostname(), "started": _now(),
            "command": sys.argv, "token": uuid.uuid4().hex}
    path = out.path(LOCK)
    for attempt in (0, 1):
        if out.local:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                held = _read_json(out, LOCK)
                if attempt == 0 and _stale(held) and _read_json(out, LOCK) == held:
                    os.remove(path)  # the run that held it is dead: take it over
                    continue
                raise OutputError(_held_message(out, held)) from None
            with os.fdopen(fd, "w") as f:
                json.dump(info, f)
                f.flush()
                os.fsync(f.fileno())
        else:  # fsspec remotes have no O_EXCL: exists + write + read back, best effort
            if out.fs.exists(path):
                held = _read_json(out, LOCK)
                if attempt == 0 and _stale(held):
                    out.fs.rm_file(path)
                    continue
                raise OutputError(_held_message(out, held))
            with out.fs.open(path, "w") as f:
                json.dump(info, f)
            back = _read_json(out, LOCK)
            if not isinstance(back, dict) or back.get("token") != info["token"]:
                raise OutputError(_held_message(out, back))
        _HELD[out.root] = info["token"]
        return info["token"]
    raise OutputError(_held_message(out, _read_json(out, LOCK)))


def release_lock(url: str) -> None:
    """Remove the lock this process took on ``url`` (no-op when it holds none)."""
    out = open_output(url)
    token = _HELD.pop(out.root, None)
    if token is None:
        return
    held = _read_json(out, LOCK)
    if isinstance(held, dict) and held.get("token") == token:
        try:
            _remove(out, LOCK)
        except OSError:
            pass


# --- claiming -----------------------------------------------------------------------------

def _write_marker(out: Output, marker: dict) -> None:
    tmp = out.path(MARKER + ".partial")
    with out.fs.open(tmp, "w") as f:
        json.dump(marker, f, indent=2, sort_keys=True)
    if out.local:
        os.replace(tmp, out.path(MARKER))
    else:  # object stores write an object atomically; fs.mv would expand glob characters
        out.fs.cp_file(tmp, out.path(MARKER))
        out.fs.rm_file(tmp)


def claim(out: Output, run_info: Dict[str, Any], scores: bool) -> List[str]:
    """Create the folder, take the lock, remove what an earlier run left (``scores``: also the
    score files) and write the marker. Returns the names removed. On any error the lock is
    released again."""
    from learnsieve import __version__
    out.fs.makedirs(out.root, exist_ok=True)
    acquire_lock(out)
    try:
        removed = clean(out, scores)
        if out.owned:
            marker = {**out.marker, "updated": _now(), "command": sys.argv, **run_info}
        else:  # what is still here is not learnsieve's: never touched, recorded as such
            foreign = [n for n in _list(out) if n not in (LOCK, MARKER, MARKER + ".partial")]
            marker = {"version": MARKER_VERSION, "created": _now(), "updated": _now(),
                      "command": sys.argv, "foreign": foreign, **run_info}
        marker["learnsieve"] = __version__
        _write_marker(out, marker)
        out.marker = marker
        return removed
    except BaseException:
        release_lock(out.url)
        raise


def mark_failed(url: str) -> None:
    """A run whose output must not look finished (e.g. nearly every input rejected): its
    ``stats.json`` becomes ``stats.failed.json``, so the same command can run again."""
    out = open_output(url)
    src, dst = out.path("stats.json"), out.path(FAILED_STATS)
    if out.local:
        if os.path.exists(src):
            os.replace(src, dst)
    elif out.fs.exists(src):
        out.fs.cp_file(src, dst)
        out.fs.rm_file(src)


# --- storage errors -------------------------------------------------------------------------
# A full disk, a quota, a read-only mount or a refused permission is the storage's fault, not the
# data's: the run stops with one line naming the path and the cause (rc 2 when the output
# probe finds it before any work, else rc 1), and the folder stays resumable (score files are
# written atomically; the lock is released as on any failure).
STORAGE_ERRNOS = {
    errno.ENOSPC: ("ENOSPC", "no space left on device"),
    errno.EDQUOT: ("EDQUOT", "disk quota exceeded"),
    errno.EROFS: ("EROFS", "read-only file system"),
    errno.EACCES: ("EACCES", "permission denied"),
    errno.EPERM: ("EPERM", "operation not permitted"),
}
# What a runner keeps of a worker's OSError: Beam's FnApiRunner re-raises a bundle's failure as
# RuntimeError(the traceback as text), e.g. "OSError: [Errno 28] No space left on device
# [while running 'WriteShardGroups/WriteGroup']" or "[Errno 30] Read-only file system: '/o/x'".
_ERRNO_TEXT = re.compile(r"\[Errno (\d+)\] ([^\n]*)")
_QUOTED = re.compile(r": ('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")")  # OSError's filename, as repr()
PROBE = ".learnsieve-probe"


@dataclass(frozen=True)
class StorageFault:
    errno: int
    filename: Optional[str]

    def describe(self, where: Optional[str] = None) -> str:
        """``no space left on device (ENOSPC) at PATH`` (``where``: the folder to name when the
        error carries no path, as a full disk's write does not)."""
        name, text = STORAGE_ERRNOS[self.errno]
        path = self.filename or where
        return f"{text} ({name})" + (f" at {_clip(path)}" if path else "")


def _clip(path: str, n: int = 300) -> str:
    return path if len(path) <= n else "..." + path[-n:]


def _chain(exc: BaseException):
    """``exc`` and every exception it was raised from or while handling, once each."""
    seen, stack = set(), [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        stack += [e.__context__, e.__cause__]


def storage_fault(exc: BaseException) -> Optional[StorageFault]:
    """The storage error behind ``exc`` (ENOSPC, EDQUOT, EROFS, EACCES, EPERM), or None: an
    ``OSError`` among its causes and contexts, else one a runner kept only as text in a
    message (the first that names a path wins)."""
    found: List[StorageFault] = []
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno in STORAGE_ERRNOS:
            found.append(StorageFault(e.errno, str(e.filename) if e.filename is not None else None))
    for e in _chain(exc):
        for m in _ERRNO_TEXT.finditer(str(e)):
            code = int(m.group(1))
            if code in STORAGE_ERRNOS:
                quoted = _QUOTED.search(m.group(2))
                name = None
                if quoted:
                    import ast
                    try:
                        name = str(ast.literal_eval(quoted.group(1)))
                    except (ValueError, SyntaxError):
                        name = quoted.group(1)[1:-1]
                found.append(StorageFault(code, name))
    return next((f for f in found if f.filename), found[0] if found else None)


def probe_writable(out: Output) -> None:
    """Before any work: that a file can be created, written and removed in the local output
    folder, or in its nearest existing parent when it does not exist yet (the folders learnsieve
    would create). One-line ``OutputError`` for a read-only mount, a refused permission (root
    too: a read-only mount stops root), a full disk or a spent quota. Remote outputs are left
    to the storage's own answer."""
    if not out.local:
        return
    where = out.root
    while not os.path.isdir(where) and os.path.dirname(where) != where:
        where = os.path.dirname(where)
    probe = os.path.join(where, f"{PROBE}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, b"\0" * 4096)  # a full disk accepts a new empty file, not a block of data
            os.fsync(fd)
        finally:
            os.close(fd)
            os.remove(probe)
    except OSError as exc:
        fault = storage_fault(exc)
        cause = StorageFault(fault.errno, where).describe() if fault else \
            f"{exc.strerror or type(exc).__name__} (errno {exc.errno}) at {_clip(where)}"
        raise OutputError(f"output {out.url} is not writable: {cause}; choose another --output, "
                          f"or make it writable") from None


# --- folders of the other commands -----------------------------------------------------------
# train-reference / train-proxy (a checkpoint), eval, shards claim their folder as curate claims
# its output: a marker of their own, the lock, and a list of what they write, so that a non-empty
# folder they did not write is refused and --overwrite removes only their own files.

@dataclass(frozen=True)
class FolderKind:
    """What one command writes into its folder."""
    command: str                  # the command, for messages ("train-reference")
    what: str                     # what a finished folder holds ("a checkpoint")
    flag: str                     # the flag naming the folder ("--out")
    files: tuple = ()             # its own file names (literal)
    dirs: tuple = ()              # its own sub-folders (removed whole, only in a folder it marked)
    patterns: tuple = ()          # regexes of its own file names (numbered shards)

    @property
    def marker(self) -> str:
        return f".learnsieve-{self.command.split('-')[0]}"


CHECKPOINT_FILES = ("model.safetensors", "config.json")  # = models/checkpoint.py WEIGHTS, CONFIG
FOLDER_KINDS = {
    "checkpoint": FolderKind("train", "a checkpoint", "--out", CHECKPOINT_FILES),
    "eval": FolderKind("eval", "an eval run", "--out",
                       ("eval.json", "eval.html", "eval_curves.png", "eval_scores_hist.png"),
                       ("random_arm",)),
    "shards": FolderKind("shards", "shards written by `learnsieve shards`", "--output",
                         ("sizes.json", "_stats.json", "failures.jsonl"), ("clean", "pool"),
                         (r"^\d{5,}\.tar$", r"^\d{5,}_stats\.json$")),
}
_OTHER_MARKERS = (MARKER,) + tuple(f".learnsieve-{k}" for k in ("train", "eval", "shards"))


def _kind_own(kind: FolderKind, entries: Sequence[str], marked: bool, foreign: Sequence[str]) -> List[str]:
    names = {n for n in entries if n in kind.files or any(re.match(p, n) for p in kind.patterns)}
    if marked:  # folders are removed whole only where this command marked the folder
        names |= {n for n in entries if n in kind.dirs}
    return sorted(n for n in names if n not in set(foreign))


def inspect_folder(url: str, kind: FolderKind, overwrite: bool = False) -> Output:
    """What is at ``url`` and whether ``kind``'s command may write there; writes nothing.
    One-line ``OutputError`` for a file; a folder another learnsieve command claimed; a non-empty
    folder it did not write (unless ``overwrite``, which still removes only its own names, and
    refuses a folder of the user's it would write into); one that already holds a finished
    result of its own (unless ``overwrite``)."""
    out = open_output(url)
    if out.local:
        refuse_file_on_path(out.root, url, kind.flag, kind.flag)
    elif out.fs.exists(out.root) and not out.fs.isdir(out.root):
        raise OutputError(f"{kind.flag} {url} is a file, not a folder: pass a folder to {kind.flag}")
    out.exists = out.fs.isdir(out.root)
    if not out.exists:
        return out
    names = _list(out)
    out.entries = [n for n in names if n not in (LOCK, kind.marker, kind.marker + ".partial")]
    if kind.marker in names:
        marker = _read_json(out, kind.marker)
        if isinstance(marker, dict) and isinstance(marker.get("version"), int):
            out.marker = marker
    other = next((m for m in _OTHER_MARKERS if m in out.entries), None)
    if other and not out.owned:
        raise OutputError(f"{kind.flag} {url} holds another learnsieve command's output ({other}): "
                          f"choose another {kind.flag}")
    if not out.entries:
        return out
    own = _kind_own(kind, out.entries, out.owned, (out.marker or {}).get("foreign") or ())
    if not overwrite:
        if own:  # a finished (or partly written) result of this command
            raise OutputError(f"{kind.flag} {url} already holds {kind.what} ({', '.join(own[:3])}"
                              f"{', ...' if len(own) > 3 else ''}): pass --overwrite to replace it "
                              f"(only {kind.command}'s own files are removed), or choose another {kind.flag}")
        if out.owned:  # its marker and the user's files only: an interrupted run, nothing to replace
            return out
        raise OutputError(f"{kind.flag} {url} is not empty and was not written by learnsieve {kind.command} "
                          f"(no {kind.marker} in it): choose another {kind.flag}, or pass --overwrite to "
                          f"replace only learnsieve's own files there (nothing else is touched)")
    if not out.owned:
        dirs = [d for d in kind.dirs if d in out.entries]
        if dirs:
            raise OutputError(f"{kind.flag} {url} holds {dirs[0]}/, which learnsieve did not write but "
                              f"would write into: move it away or choose another {kind.flag}")
    return out


def claim_folder(url: str, kind: FolderKind, overwrite: bool = False,
                 run_info: Optional[Dict[str, Any]] = None) -> Output:
    """``inspect_folder``, then create the folder, take its lock, remove this command's own files
    (``overwrite``) and write its marker, recording what else was there (``foreign``: never
    touched). The caller releases the lock with ``release_lock(url)`` (or uses ``owned_folder``)."""
    from learnsieve import __version__
    out = inspect_folder(url, kind, overwrite)
    probe_writable(out)
    out.fs.makedirs(out.root, exist_ok=True)
    acquire_lock(out)
    try:
        foreign = list((out.marker or {}).get("foreign") or [])
        for rel in _kind_own(kind, out.entries, out.owned, foreign):
            _remove(out, rel)
        if not out.owned:
            foreign = [n for n in _list(out) if n not in (LOCK, kind.marker, kind.marker + ".partial")]
        marker = {"version": MARKER_VERSION, "created": (out.marker or {}).get("created", _now()),
                  "updated": _now(), "command": sys.argv, "kind": kind.command, "foreign": foreign,
                  "learnsieve": __version__, **(run_info or {})}
        tmp = out.path(kind.marker + ".partial")
        with out.fs.open(tmp, "w") as f:
            json.dump(marker, f, indent=2, sort_keys=True)
        if out.local:
            os.replace(tmp, out.path(kind.marker))
        else:
            out.fs.cp_file(tmp, out.path(kind.marker))
            out.fs.rm_file(tmp)
        out.marker = marker
        return out
    except BaseException:
        release_lock(out.url)
        raise


class owned_folder:
    """``with owned_folder(url, FOLDER_KINDS["eval"], overwrite) as out:`` claims the folder
    (``claim_folder``) and releases its lock at the end, also on failure."""

    def __init__(self, url: str, kind: FolderKind, overwrite: bool = False,
                 run_info: Optional[Dict[str, Any]] = None):
        self.url, self.kind, self.overwrite, self.run_info = url, kind, overwrite, run_info

    def __enter__(self) -> Output:
        self.out = claim_folder(self.url, self.kind, self.overwrite, self.run_info)
        self.created = not self.out.exists
        return self.out

    def __exit__(self, exc_type, exc, tb) -> bool:
        release_lock(self.url)
        if exc_type is not None and self.created:  # failed before writing anything: leave no trace
            try:
                left = _list(self.out)
                if left == [self.kind.marker]:
                    _remove(self.out, self.kind.marker)
                    _rmdir_if_empty(self.out, "")
            except OSError:
                pass
        return False
