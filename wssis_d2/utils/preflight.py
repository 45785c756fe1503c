"""Start-of-stage check of where a stage or tool writes: an error at start, not after hours of work.

:func:`check_output_dir` creates the folder, writes and removes a probe file in it, and compares the free
disk space (``shutil.disk_usage``) with what the stage needs; any failure is a
:class:`~wssis_d2.utils.errors.WSSISInputError` naming the folder.

Free-space estimate: a constant floor, :data:`MIN_FREE_MB` (512 MiB: a few SOLOv2 R-50 checkpoints are
~350 MB each, the pseudo-label / refinement jsons of COCO 5% tens of MB), which the environment variable
``WSSIS_MIN_FREE_MB`` overrides (e.g. 0 to skip the check, or more for a COCO run keeping many
checkpoints). Callers may ask for more with ``need_mb``.
"""
import os
import shutil
import tempfile

from .errors import WSSISInputError

__all__ = ["MIN_FREE_MB", "check_output_dir", "check_output_file"]

MIN_FREE_MB = 512
MIN_FREE_ENV = "WSSIS_MIN_FREE_MB"


def check_output_dir(folder, what="output folder", need_mb=None):
    """Create ``folder``, check it is writable and has at least ``need_mb`` MiB free (default: the floor
    above); returns ``folder``. Raises ``WSSISInputError`` naming the folder otherwise."""
    folder = os.fspath(folder)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise WSSISInputError(f"{folder}: cannot create the {what}: {e.strerror or e}") from e
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".wssis_write_probe.")
        try:
            os.write(fd, b"probe")
        finally:
            os.close(fd)
            os.remove(probe)
    except OSError as e:
        raise WSSISInputError(f"{folder}: the {what} is not writable: {e.strerror or e}") from e
    if need_mb is None:
        need_mb = float(os.environ.get(MIN_FREE_ENV, MIN_FREE_MB))
    free_mb = shutil.disk_usage(folder).free / 2**20
    if free_mb < need_mb:
        raise WSSISInputError(f"{folder}: only {free_mb:.0f} MiB free on its disk, the {what} needs at least "
                              f"{need_mb:.0f} MiB (free some space, choose another folder, or set "
                              f"{MIN_FREE_ENV} to what this run really needs)")
    return folder


def check_output_file(path, what="output file", need_mb=None):
    """:func:`check_output_dir` on the folder of the file ``path``; returns ``path``."""
    check_output_dir(os.path.dirname(os.path.abspath(os.fspath(path))), f"folder of the {what} {path}", need_mb)
    return path
