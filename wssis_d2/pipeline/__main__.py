"""``python -m wssis_d2.pipeline``: run or resume a PointWSSIS pipeline (see wssis_d2/pipeline/cli.py)."""
from .cli import main
from ..utils.errors import run_cli

if __name__ == "__main__":
    run_cli(main)  # one "error: ..." line for bad input (--traceback: all of it)
