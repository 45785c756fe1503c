#!/usr/bin/env python
"""Split a COCO instances json into fully-labeled and point-labeled images (PointWSSIS).

Writes into --output-dir (rules in wssis_d2/data/splits.py and docs/DATA.md):
    <name>_<p>p_s<seed>_full.json       fully-labeled images, all their annotations
    <name>_<p>p_s<seed>_points.json     the other images, one point + class per non-crowd instance
    <name>_<p>p_s<seed>_points_gt.json  the same point images with their true masks (evaluation only)
(``<count>n`` instead of ``<p>p`` with --count). Crowd annotations stay out of the points file and
in points_gt with iscrowd=1. Annotations that already carry point_coords and no mask (PointSup style)
pass through unchanged.

    python datasets/prepare_wssis_splits.py --json datasets/coco/annotations/instances_train2017.json \
        --image-root datasets/coco/train2017 --percent 5 --seed 1 --name train2017 \
        --output-dir datasets/coco/wssis_splits
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from wssis_d2.data.point_rules import POINT_RULES  # noqa: E402
from wssis_d2.data.splits import write_wssis_splits  # noqa: E402
from wssis_d2.utils.errors import run_cli  # noqa: E402
from wssis_d2.utils.preflight import check_output_dir  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", required=True, help="source COCO instances json")
    p.add_argument("--image-root", default=None, help="image directory (recorded in the outputs' info)")
    size = p.add_mutually_exclusive_group(required=True)
    size.add_argument("--percent", type=float, help="percentage of fully-labeled images")
    size.add_argument("--count", type=int, help="number of fully-labeled images")
    p.add_argument("--seed", type=int, default=1, help="split seed (also seeds --point-rule random)")
    p.add_argument("--point-rule", default="centroid", choices=POINT_RULES,
                   help="where the point of each mask goes")
    p.add_argument("--output-dir", required=True, help="directory for the three jsons")
    p.add_argument("--name", default=None, help="output file prefix (default: the json's file name)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    check_output_dir(args.output_dir, "split folder")
    percent = args.percent
    if percent is not None and float(percent).is_integer():
        percent = int(percent)  # "5p", not "5.0p", in file names
    try:
        paths = write_wssis_splits(args.json, args.output_dir, seed=args.seed, percent=percent,
                                   count=args.count, point_rule=args.point_rule,
                                   image_root=args.image_root, name=args.name)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"prepare_wssis_splits: error: {e}")
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    if "points_gt" not in paths:
        print("no masks on the point images: points_gt not written")


if __name__ == "__main__":
    run_cli(main)  # one "error: ..." line for bad input (--traceback: all of it)
