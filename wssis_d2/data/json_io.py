"""Small json helpers: load with a clear error, write atomically."""
import json
import os

from ..utils.part_files import atomic_output

from ..utils.errors import WSSISInputError

__all__ = ["load_json", "write_json_atomic"]


def load_json(path, hint=None):
    """Load a json file; a missing file raises FileNotFoundError naming it and, if given, ``hint``
    (e.g. the command that generates it)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        msg = f"{path} does not exist."
        if hint:
            msg += f" {hint}"
        raise FileNotFoundError(msg)
    with open(path, "r") as f:
        try:
            return json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:  # also a truncated file
            raise WSSISInputError(f"{path} is not valid json (truncated or malformed?): {e}") from e


def write_json_atomic(obj, path, indent=None):
    """Write ``obj`` as json to ``path`` atomically (``indent`` as in ``json.dump``).

    The json goes to a temporary file in the same directory first and is then moved over ``path``
    with ``os.replace``, so a reader never sees a half-written file and an interrupted run leaves
    the previous file (if any) intact. Parent directories are created.
    """
    with atomic_output(path) as f:
        json.dump(obj, f, indent=indent)
    return os.fspath(path)
