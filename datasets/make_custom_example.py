#!/usr/bin/env python
"""Write a generated "own dataset" as a labeling team would have it (wssis_d2/data/custom_example.py):
images/, full.json (COCO with masks, PERCENT of the training images), clicks_labelme/ (one labelme file
of point clicks per other image), val.json, and points_gt.json (true masks of the clicked images, kept
aside for measuring pseudo-label quality). README "Your own data" walks through it.

    python datasets/make_custom_example.py --output-dir datasets/my_shapes --num-train 200 --num-val 50
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from wssis_d2.formats.custom_example import write_custom_example  # noqa: E402
from wssis_d2.utils.errors import run_cli  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output-dir", required=True)
    p.add_argument("--num-train", type=int, default=200)
    p.add_argument("--num-val", type=int, default=50)
    p.add_argument("--size", type=int, default=192, help="image side in pixels")
    p.add_argument("--percent", type=float, default=10, help="fully-labeled percentage of the training images")
    p.add_argument("--seed", type=int, default=0, help="generator seed")
    p.add_argument("--style", default="clean", help="shapes style (clean or cluttered)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    paths = write_custom_example(args.output_dir, args.num_train, args.num_val, size=args.size,
                                 percent=args.percent, seed=args.seed, style=args.style)
    print(f"wrote {paths} in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    run_cli(main)  # one "error: ..." line for bad input (--traceback: all of it)
