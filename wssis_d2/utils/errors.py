"""User-facing errors and the one command-line wrapper that prints them as one line.

Every check of user input (json files, images, checkpoints, output folders) raises
:class:`WSSISInputError` with a message that names the file, the image or annotation id and what is
wrong. The command-line entry points (``tools/*.py``, ``datasets/*.py``, ``train_net.py``,
``python -m wssis_d2.pipeline``) run their ``main`` through :func:`run_cli`, which turns such an error
(and a missing file) into one line ``error: ...`` on stderr and exit status 2. ``--traceback`` on the
command line, or the environment variable ``WSSIS_TRACEBACK=1``, shows the full traceback instead.
"""
import os
import sys

__all__ = ["WSSISInputError", "run_cli", "TRACEBACK_ENV"]

TRACEBACK_ENV = "WSSIS_TRACEBACK"


class WSSISInputError(ValueError):
    """Bad user input: the message names the file, the image / annotation id and what is wrong.

    A ``ValueError`` so that callers catching ``ValueError`` keep working."""


def run_cli(main, argv=None):
    """Run ``main(argv)`` (``argv`` default: ``sys.argv[1:]`` without ``--traceback``).

    A :class:`WSSISInputError` or ``FileNotFoundError`` is printed as one line ``error: <message>`` on
    stderr and the process exits with status 2; with ``--traceback`` in the arguments or
    ``WSSIS_TRACEBACK=1`` it propagates (full traceback). Returns what ``main`` returns.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    show = "--traceback" in argv or os.environ.get(TRACEBACK_ENV, "") not in ("", "0")
    argv = [a for a in argv if a != "--traceback"]
    try:
        return main(argv)
    except (WSSISInputError, FileNotFoundError) as e:
        if show:
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
