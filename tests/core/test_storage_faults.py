"""Storage errors found behind whatever wraps them (learnsieve/core/output.py ``storage_fault``):
an OSError among an exception's causes and contexts, or only its text in a runner's message, as
Beam's FnApiRunner keeps a worker's failure. The e2e cases (read-only and full tmpfs mounts) are
in tests/e2e/test_user_faults.py; EACCES and EDQUOT, which root on tmpfs cannot meet, are here."""
import errno
import os

import pytest

from learnsieve.core.output import OutputError, open_output, probe_writable, storage_fault

BEAM_TEXT = """Traceback (most recent call last):
  File "apache_beam/runners/common.py", line 1512, in apache_beam.runners.common.DoFnRunner.process
OSError: [Errno 28] No space left on device

During handling of the above exception, another exception occurred:

RuntimeError: OSError: [Errno 28] No space left on device [while running 'WriteShardGroups/WriteGroup']
"""


@pytest.mark.parametrize("text,code,name", [
    (BEAM_TEXT, errno.ENOSPC, None),
    ("OSError: [Errno 30] Read-only file system: '/o/.learnsieve-lock'", errno.EROFS, "/o/.learnsieve-lock"),
    ("PermissionError: [Errno 13] Permission denied: \"/in/it's.tar\"\n  more", errno.EACCES, "/in/it's.tar"),
    (f"OSError: [Errno {errno.EDQUOT}] Disk quota exceeded: '/q/a b/00001.tar' [while running 'W']",
     errno.EDQUOT, "/q/a b/00001.tar"),
])
def test_a_storage_error_kept_as_text_is_found(text, code, name):
    fault = storage_fault(RuntimeError(text))
    assert fault is not None and (fault.errno, fault.filename) == (code, name)


def test_a_chained_storage_error_is_found_with_its_path():
    try:
        try:
            raise PermissionError(errno.EACCES, "Permission denied", "/out/_scores/x.parquet")
        except OSError as exc:
            raise RuntimeError("bundle failed") from exc
    except RuntimeError as exc:
        fault = storage_fault(exc)
    assert (fault.errno, fault.filename) == (errno.EACCES, "/out/_scores/x.parquet")
    assert fault.describe("/out") == "permission denied (EACCES) at /out/_scores/x.parquet"
    assert storage_fault(RuntimeError("[Errno 28] No space left on device")).describe("/out") == \
        "no space left on device (ENOSPC) at /out"


@pytest.mark.parametrize("exc", [
    FileNotFoundError(errno.ENOENT, "No such file or directory", "/x"),
    RuntimeError("OSError: [Errno 18] Invalid cross-device link: '/a' -> '/b'"),
    ValueError("Errno 28 appears here only in prose"),
])
def test_other_errors_are_not_storage_faults(exc):
    assert storage_fault(exc) is None


def test_the_output_probe_names_the_folder_and_the_cause(tmp_path, monkeypatch):
    """As a user without write permission meets it (root is not refused by mode bits, so the
    refusal is injected at os.open): one-line OutputError, the probe file never left behind."""
    out = open_output(str(tmp_path / "new" / "out"))
    probe_writable(out)  # writable: nothing raised, nothing left
    assert os.listdir(tmp_path) == []

    def refuse(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", path)

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(OutputError) as info:
        probe_writable(out)
    assert str(info.value).startswith(f"output {tmp_path}/new/out is not writable: permission denied "
                                      f"(EACCES) at {tmp_path}")
    assert "\n" not in str(info.value)
