"""``python -m wssis_d2.pipeline``: run or resume a PointWSSIS pipeline (see wssis_d2/pipeline/cli.py)."""
from .cli import main

if __name__ == "__main__":
    main()
