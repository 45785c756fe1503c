#!/usr/bin/env python
"""Generate the embedded synthetic dataset "wssis_shapes" (see wssis_d2/data/synthetic.py).

Writes ``<output-dir>/train.json``, ``<output-dir>/val.json`` (COCO instances, RLE masks), the
JPEG images under ``<output-dir>/images/`` and the PointWSSIS splits of train.json
(``<output-dir>/splits/train_<p>p_s<seed>_{full,points,points_gt}.json``, centroid points).
The default output dir is the one ``register_wssis_shapes()`` reads:
``$DETECTRON2_DATASETS/wssis_shapes`` (``DETECTRON2_DATASETS`` defaults to ``datasets``).

    python datasets/generate_shapes.py --num-train 1000 --num-val 200 --size 320 --seed 0
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from wssis_d2.data.datasets.builtin import SPLIT_PERCENTS  # noqa: E402
from wssis_d2.data.splits import write_wssis_splits  # noqa: E402
from wssis_d2.data.synthetic import MAX_INSTANCES, MAX_SIZE_FRACTION, MIN_SIZE, STYLES, generate_shapes_dataset  # noqa: E402,E501
from wssis_d2.utils.errors import run_cli  # noqa: E402


def default_output_dir():
    return os.path.join(os.getenv("DETECTRON2_DATASETS", "datasets"), "wssis_shapes")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output-dir", default=default_output_dir(), help="dataset root to write")
    p.add_argument("--num-train", type=int, default=1000, help="number of training images")
    p.add_argument("--num-val", type=int, default=200, help="number of validation images")
    p.add_argument("--size", type=int, nargs="+", default=[320],
                   help="image side in pixels, or HEIGHT WIDTH")
    p.add_argument("--seed", type=int, default=0, help="generator seed")
    p.add_argument("--style", default="cluttered", choices=STYLES, help="appearance (see wssis_d2.data.synthetic)")
    p.add_argument("--max-instances", type=int, default=MAX_INSTANCES, help="at most this many shapes per image")
    p.add_argument("--min-size", type=float, default=MIN_SIZE, help="smallest instance scale in pixels")
    p.add_argument("--max-size-fraction", type=float, default=MAX_SIZE_FRACTION,
                   help="largest instance scale, fraction of the shorter image side (log-uniform in between)")
    p.add_argument("--split-percents", type=int, nargs="*", default=list(SPLIT_PERCENTS),
                   help="fully-labeled percentages of the train splits to write (none: no splits)")
    p.add_argument("--split-seed", type=int, default=1, help="seed of the train splits")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if len(args.size) not in (1, 2):
        raise SystemExit("--size takes one value (square) or two (HEIGHT WIDTH)")
    size = args.size[0] if len(args.size) == 1 else tuple(args.size)
    for split, num in (("train", args.num_train), ("val", args.num_val)):
        start = time.perf_counter()
        path = generate_shapes_dataset(args.output_dir, num, image_size=size, seed=args.seed, split=split,
                                       max_instances=args.max_instances, min_size=args.min_size,
                                       style=args.style, max_size_fraction=args.max_size_fraction)
        print(f"wrote {path} ({num} images) in {time.perf_counter() - start:.1f} s")
    train_json = os.path.join(args.output_dir, "train.json")
    for percent in args.split_percents:
        paths = write_wssis_splits(train_json, os.path.join(args.output_dir, "splits"), seed=args.split_seed,
                                   percent=percent, point_rule="centroid",
                                   image_root=os.path.join(args.output_dir, "images"), name="train")
        print(f"wrote {percent}% split: {', '.join(os.path.basename(p) for p in paths.values())}")


if __name__ == "__main__":
    run_cli(main)  # one "error: ..." line for bad input (--traceback: all of it)
