"""Is every remote path reachable with the credentials at hand? Asked once, before any work, with
a hard deadline, no retries and no log noise; the answer is one line naming the path and why
(no credentials, no network, no such bucket, permission), or nothing.

Without it, gcsfs retries each failed request six times with backoff (minutes) and logs a
traceback per try. Here ``gs://`` is probed with one plain HTTP request to the JSON API that
gcsfs itself uses (same endpoint, ``STORAGE_EMULATOR_HOST`` included, same credentials, same
fsspec config such as ``token``); other fsspec protocols with one ``info`` call of their
filesystem, in a thread that is given up at the deadline. Local paths are not probed.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Dict, Iterable, List, Optional, Tuple
from urllib.parse import quote, urlsplit

import braceexpand
import fsspec

from learnsieve.errors import LearnsieveError

DEFAULT_TIMEOUT = 10.0  # seconds for all probes together; LEARNSIEVE_REMOTE_TIMEOUT overrides
LOCAL = ("file", "local", "memory")
QUIET = ("gcsfs", "gcsfs.credentials", "fsspec", "urllib3", "google", "google.auth",
         "google_auth_httplib2", "aiohttp", "asyncio", "s3fs", "botocore", "boto3", "adlfs", "azure")
_GLOB = "*?["
_ENV_LOCK = threading.Lock()


class RemoteError(LearnsieveError, ValueError):
    """A remote path is unreachable; the message is one line."""


# (what, shown, path, write): what names the argument (e.g. "--input"), shown is the user's
# pattern, path one remote path that stands for its bucket, write: an output
Target = Tuple[str, str, str, bool]


def remote_targets(targets: Iterable[Tuple[str, Optional[str], bool]]) -> List[Target]:
    """The remote ones of ``targets``, each ``::``-joined pattern part and brace expansion once
    per (protocol, bucket): the first path of each bucket stands for the bucket."""
    seen = set()
    out: List[Target] = []
    for what, value, write in targets:
        if not value:
            continue
        for part in str(value).split("::"):
            part = part.strip()
            if not part or _protocol(part) in LOCAL:
                continue
            for path in braceexpand.braceexpand(part):
                key = (_protocol(path), _bucket(path), write)
                if key not in seen:
                    seen.add(key)
                    out.append((what, part, path, write))
    return out


def check_remote(targets: Iterable[Tuple[str, Optional[str], bool]],
                 timeout: Optional[float] = None) -> None:
    """Raise ``RemoteError`` (one line) for the first of ``targets`` that is not reachable.

    ``targets``: (what, path or pattern, write). All probes run at once, each in a daemon
    thread; one still running at the deadline counts as unreachable (and is left behind).
    """
    todo = remote_targets(targets)
    if not todo:
        return
    if timeout is None:
        try:
            timeout = float(os.environ.get("LEARNSIEVE_REMOTE_TIMEOUT", DEFAULT_TIMEOUT))
        except ValueError:
            timeout = DEFAULT_TIMEOUT
    deadline = time.monotonic() + timeout
    results: Dict[int, Optional[str]] = {}
    quiet = _Quiet()
    threads = []
    with quiet:
        for i, (_, _, path, write) in enumerate(todo):
            t = threading.Thread(target=_run, args=(results, i, path, write, timeout), daemon=True,
                                 name=f"learnsieve-probe-{i}")
            t.start()
            threads.append(t)
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        quiet.keep = any(t.is_alive() for t in threads)  # a straggler must not log later
    for i, (what, shown, _, _) in enumerate(todo):
        reason = results.get(i, f"no answer within {timeout:g} s (no network, a firewall that "
                                f"drops the connection, or a credentials server that does not answer)")
        if reason:
            raise RemoteError(f"{what} {shown}: {reason}")


def _run(results: Dict[int, Optional[str]], i: int, path: str, write: bool, timeout: float) -> None:
    try:
        results[i] = probe(path, write, timeout)
    except BaseException as exc:
        results[i] = _describe(exc, path)


def probe(path: str, write: bool = False, timeout: float = DEFAULT_TIMEOUT) -> Optional[str]:
    """Why ``path`` is unreachable (one line), or None when it answers. May block; see
    ``check_remote`` for the deadline."""
    protocol = _protocol(path)
    if protocol in LOCAL:
        return None
    try:
        fsspec.get_filesystem_class(protocol)
    except ImportError as exc:
        from fsspec.registry import known_implementations
        err = known_implementations.get(protocol, {}).get("err")
        return (err or f"the {protocol}:// filesystem is not installed ({exc})").rstrip(".")
    except ValueError:
        return f"unknown protocol {protocol}:// (fsspec has no filesystem for it)"
    if protocol in ("gs", "gcs"):
        return _probe_gcs(path, write, timeout)
    return _probe_fsspec(protocol, path)


def _probe_gcs(path: str, write: bool, timeout: float) -> Optional[str]:
    import requests
    # The compute-engine fallback of gcsfs's credential search asks the metadata server again
    # with retries (~15 s off Google Cloud); google.auth.default(), tried first, already finds
    # compute-engine credentials on Google Cloud. The env var is read once, at construction.
    with _ENV_LOCK:  # probes of several buckets run at once; the env var is process-wide
        saved = os.environ.get("NO_GCE_CHECK")
        os.environ["NO_GCE_CHECK"] = "true"
        try:
            fs = fsspec.filesystem("gs", skip_instance_cache=True)  # fsspec config: token, project
        finally:
            if saved is None:
                os.environ.pop("NO_GCE_CHECK", None)
            else:
                os.environ["NO_GCE_CHECK"] = saved
    bucket, key = _bucket(path), _prefix(path)
    if not bucket:
        return "no bucket in the path (expected gs://BUCKET/...)"
    anon = fs.credentials.credentials is None
    headers: Dict[str, str] = {}
    fs.credentials.apply(headers)  # refreshes the token: may fail without network
    params = {"prefix": key, "maxResults": "1", "fields": "items/name"}
    if getattr(fs, "requester_pays", False):
        project = fs.requester_pays if isinstance(fs.requester_pays, str) else fs.project
        if project:
            params["userProject"] = project
    base = fs.base + "b/" + quote(bucket, safe="")
    r = requests.get(base + "/o", params=params, headers=headers, timeout=(timeout, timeout))
    if r.status_code == 200:
        if write and not anon:
            return _gcs_can_write(requests, base, headers, bucket, timeout)
        return None
    return _http_reason(r.status_code, _message(r), bucket, anon)


def _gcs_can_write(requests, base: str, headers, bucket: str, timeout: float) -> Optional[str]:
    """testIamPermissions needs no permission itself; an endpoint without it (an emulator)
    or any other answer than a list is no verdict."""
    try:
        r = requests.get(base + "/iam/testPermissions", headers=headers, timeout=(timeout, timeout),
                         params={"permissions": ["storage.objects.create", "storage.objects.list"]})
        body = r.json() if r.status_code == 200 else {}
        granted = set(body.get("permissions", [])) \
            if body.get("kind") == "storage#testIamPermissionsResponse" else None
    except Exception:
        return None
    if granted is not None and "storage.objects.create" not in granted:
        return (f"permission denied: these credentials cannot create objects in gs://{bucket} "
                f"(needs storage.objects.create)")
    return None


def _http_reason(status: int, msg: str, bucket: str, anon: bool) -> str:
    detail = f" ({msg})" if msg else ""
    if status == 404:
        return f"no such bucket gs://{bucket}"
    if status in (401, 403) and anon:
        return (f"no credentials: anonymous access to gs://{bucket} was refused (HTTP {status}); "
                f"run `gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS")
    if status == 401:
        return f"credentials rejected (HTTP 401{': ' + msg if msg else ''})"
    if status == 403:
        return f"permission denied (HTTP 403{': ' + msg if msg else ''})"
    return f"HTTP {status} from the storage endpoint{detail}"


def _message(r) -> str:
    try:
        err = r.json().get("error", {})
        msg = err if isinstance(err, str) else err.get("message", "")
    except Exception:
        msg = r.text[:200]
    return " ".join(str(msg).split())


def _probe_fsspec(protocol: str, path: str) -> Optional[str]:
    fs = fsspec.filesystem(protocol, skip_instance_cache=True)
    target = _prefix_path(path)
    try:
        fs.info(target)
    except FileNotFoundError as exc:
        cause = exc.__cause__ or exc.__context__  # fsspec's http wraps every failure so
        if cause is not None and not isinstance(cause, FileNotFoundError):
            return _describe(cause, path)
        # the endpoint answered; a missing shard or a new output folder is checked later
    return None


def _describe(exc: BaseException, path: str) -> str:
    """One line for an exception of a probe: the four usual reasons first, else its type and
    first line."""
    chain = []
    e: Optional[BaseException] = exc
    while e is not None and len(chain) < 10:
        chain.append(e)
        e = e.__cause__ or e.__context__
    names = " ".join(type(e).__name__ for e in chain)
    text = " ".join(str(e) for e in chain)
    host = _host(path)
    if any(isinstance(e, socket.gaierror) for e in chain) or "NameResolution" in names \
            or "Failed to resolve" in text or "Name or service not known" in text \
            or "Temporary failure in name resolution" in text:
        return f"no network: cannot resolve {host}"
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "Connection refused" in text:
        return f"no network: connection to {host} refused"
    if "ConnectTimeout" in names or "timed out" in text.lower() and "connect" in text.lower():
        return f"no network: connecting to {host} timed out"
    if "ReadTimeout" in names or any(isinstance(e, (TimeoutError, socket.timeout)) for e in chain):
        return f"{host} did not answer in time"
    if "TransportError" in names:
        return "no network: cannot reach the credentials' token endpoint"
    if "DefaultCredentialsError" in names or "NoCredentials" in names or "CredentialsError" in names:
        return "no credentials: " + _first_line(exc)
    if "RefreshError" in names or "Invalid Credentials" in text:
        return ("credentials could not be refreshed (expired or revoked?); run "
                "`gcloud auth application-default login`: " + _first_line(exc))
    if any(isinstance(e, PermissionError) for e in chain) or "AccessDenied" in text \
            or "Forbidden" in text:
        return "permission denied: " + _first_line(exc)
    if "NoSuchBucket" in text or "bucket does not exist" in text.lower():
        return "no such bucket: " + _first_line(exc)
    if any(isinstance(e, ConnectionError) for e in chain) or "ConnectionError" in names \
            or "ClientConnector" in names:
        return "no network: " + _first_line(exc)
    return f"{type(exc).__name__}: {_first_line(exc)}"


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return (lines[0] if lines else type(exc).__name__)[:300]


def _protocol(path: str) -> str:
    protocol, _ = fsspec.core.split_protocol(path)
    return protocol or "file"


def _strip(path: str) -> str:
    return fsspec.core.split_protocol(path)[1]


def _bucket(path: str) -> str:
    return _strip(path).lstrip("/").split("/", 1)[0]


def _prefix(path: str) -> str:
    """The object-name prefix before the first glob character (within the bucket)."""
    rest = _strip(path).lstrip("/").split("/", 1)
    key = rest[1] if len(rest) > 1 else ""
    cut = min([key.index(c) for c in _GLOB if c in key] or [len(key)])
    return key[:cut]


def _prefix_path(path: str) -> str:
    """``path`` up to the folder before its first glob character."""
    cut = min([path.index(c) for c in _GLOB if c in path] or [len(path)])
    head = path[:cut]
    return head if cut == len(path) else head.rsplit("/", 1)[0]


def _host(path: str) -> str:
    if _protocol(path) in ("gs", "gcs"):
        emulator = os.environ.get("STORAGE_EMULATOR_HOST", "")
        if emulator not in ("", "default"):
            return urlsplit(emulator if "://" in emulator else "http://" + emulator).netloc
        return "storage.googleapis.com"
    return urlsplit(path).netloc or _bucket(path)


class _Quiet:
    """Silences the storage libraries' loggers (and warnings) while the probes run."""

    def __init__(self):
        self.keep = False
        self._saved: List[Tuple[logging.Logger, int, bool]] = []

    def __enter__(self):
        for name in QUIET:
            lg = logging.getLogger(name)
            self._saved.append((lg, lg.level, lg.propagate))
            lg.setLevel(logging.CRITICAL + 1)
        import warnings
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore")
        return self

    def __exit__(self, *exc):
        self._warnings.__exit__(*exc)
        if not self.keep:
            for lg, level, _ in self._saved:
                lg.setLevel(level)
        return False
