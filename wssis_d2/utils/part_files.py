"""Resumable per-rank part files, merged into one output that is replaced atomically.

The pattern of the pseudo-label export and of the MaskRefineNet refinement: every rank appends one json
line per finished image to its own part file (flushed per line, so an interruption loses at most the
line being written); the main process reads all parts back (complete lines only, first record of each
key), writes the merged output into a temporary file next to it and moves it into place with
``os.replace``, so the output only ever appears complete.
"""
import contextlib
import json
import logging
import os
import tempfile
from typing import IO, Iterator, Sequence

__all__ = ["atomic_output", "open_part", "write_record", "read_records", "truncate_incomplete_line"]

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def atomic_output(path: str, mode: str = "w") -> Iterator[IO]:
    """A file to write ``path`` through (text; ``mode="wb"``: bytes): a temporary file in the same directory
    (created with its parents), moved over ``path`` when the block ends without an exception, removed
    otherwise (an earlier ``path`` is then left intact)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def truncate_incomplete_line(path: str) -> None:
    """Cut a last line without its newline (a write interrupted midway) off ``path``, if it exists."""
    if not os.path.isfile(path):
        return
    with open(path, "rb+") as f:
        data = f.read()
        end = data.rfind(b"\n") + 1
        if end != len(data):
            f.truncate(end)


def open_part(path: str, resume: bool) -> IO[str]:
    """Open a part file for writing (parent directories created): ``resume`` appends after its last
    complete line, otherwise the file starts empty."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if not resume:
        return open(path, "w")
    truncate_incomplete_line(path)
    return open(path, "a")


def write_record(f: IO[str], record: dict) -> None:
    """Append ``record`` as one json line and flush it."""
    f.write(json.dumps(record) + "\n")
    f.flush()


def read_records(paths: Sequence[str], key: str = "image_id") -> Iterator[dict]:
    """The records of the part files ``paths``, in order, complete lines only; a record whose ``key``
    was seen before is skipped (the count is logged once at the end).

    Raises:
        FileNotFoundError: a part file is missing (a rank did not run).
    """
    seen, dup = set(), 0
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Part file {path} is missing (did every rank run?)")
        with open(path, "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    break  # interrupted while writing this line
                record = json.loads(line)
                if record[key] in seen:
                    dup += 1
                    continue
                seen.add(record[key])
                yield record
    if dup:
        logger.warning(f"{dup} records of {list(paths)} repeat an earlier {key}; the first copy of each is kept")
