#!/usr/bin/env python
"""wssis-d2: weakly semi-supervised instance segmentation (PointWSSIS) as a detectron2 extension.

Install into an environment that already has detectron2 (``pip install -e .``), or run ``make install``
to create ``.venv`` with everything, detectron2 included (see README, "Install").
"""
import os
import subprocess
import sys

from setuptools import find_packages, setup


def _detectron2_installed() -> bool:
    """Whether the interpreter that pip installs into can import detectron2.

    Asked in a child process without pip's PYTHONPATH: under build isolation, this process sees only the
    temporary build environment, not the target environment's site-packages.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('detectron2') is None)"
    return subprocess.run([sys.executable, "-c", probe], env=env).returncode == 0


if not _detectron2_installed():
    sys.exit(
        "wssis-d2 needs detectron2, which is not installed in this Python environment.\n"
        "detectron2 is not on PyPI under its own name. Either install it from its repository "
        "(https://detectron2.readthedocs.io/en/latest/tutorials/install.html) and run "
        "`pip install -e .` again, or run `make install` in this checkout, which builds detectron2 0.6 "
        "from the PyPI sdist `pb1-detectron2` (scripts/install_detectron2.sh)."
    )

setup(
    name="wssis-d2",
    version="0.1.0",
    description="PointWSSIS (CVPR 2023) weakly semi-supervised instance segmentation on detectron2",
    packages=find_packages(include=("wssis_d2", "wssis_d2.*")),
    python_requires=">=3.9",
    # detectron2 itself is not listed: it has no PyPI distribution under that name (checked above).
    install_requires=["torch", "fvcore", "pycocotools", "opencv-python", "numpy", "tifffile", "imagecodecs"],
    # labelstudio: Label Studio's own brush RLE (wssis_d2/formats/labelstudio.py). Its Pillow>=12.3 pin conflicts
    # with detectron2 0.6 (Pillow<10): with that detectron2 install it with `pip install --no-deps
    # label-studio-sdk` (as `make install` does, requirements-nodeps.txt); the brush module needs numpy only.
    # serve: the Label Studio ML backend (python -m wssis_d2.serve): Flask app, waitress server; it writes
    # brush masks, so it also needs the labelstudio extra's SDK (installed as that extra says).
    extras_require={"dev": ["pytest", "py-ctcmetrics", "flask"], "labelstudio": ["label-studio-sdk"],
                    "serve": ["flask>=3", "waitress>=3"]},
)
