#!/usr/bin/env python
"""Draw point labels and (pseudo-)masks over their images, one PNG per image (detectron2 Visualizer).

    # a registered dataset (points, points_gt, full, ...; names of docs/DATA.md under --data-root)
    python tools/visualize.py --dataset wssis_shapes_train_5p_s1_points --output vis/points --max-images 8
    # a pseudo-label (or any COCO) json; the image root defaults to the json's info["image_root"]
    python tools/visualize.py --json output/demo/pseudo_adaptive/pseudo_labels.json --output vis/adaptive

Masks are filled with their class label (and score when it is not 1); points are dots with a dark rim.
Small images are enlarged to ~512 px (--scale to choose).
"""
import argparse
import os
import sys

from detectron2.utils.logger import setup_logger

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from wssis_d2.data.datasets import register_wssis_splits  # noqa: E402
from wssis_d2.mrn.datasets import register_mrn_datasets  # noqa: E402
from wssis_d2.utils.visualize import render_coco_json, render_dataset  # noqa: E402
from wssis_d2.utils.errors import run_cli  # noqa: E402
from wssis_d2.utils.preflight import check_output_dir  # noqa: E402


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", help="a registered dataset name")
    src.add_argument("--json", help="a COCO instances / points / pseudo-label json")
    p.add_argument("--image-root", default=None, help="with --json: default the json's info['image_root']")
    p.add_argument("--data-root", default=None, help="with --dataset: datasets root (default $DETECTRON2_DATASETS)")
    p.add_argument("--output", required=True, help="directory for the PNGs")
    p.add_argument("--max-images", type=int, default=8)
    p.add_argument("--scale", type=float, default=0.0, help="output scale (0: enlarge small images to ~512 px)")
    p.add_argument("--all-images", action="store_true", help="with --json: include images without annotations")
    p.add_argument("--skip-bad-images", action="store_true",
                   help="skip missing / unreadable / truncated images with a warning and a count")
    return p


def main(argv=None):
    args = get_parser().parse_args(argv)
    check_output_dir(args.output, "PNG folder")
    logger = setup_logger(name="wssis_d2")
    if args.dataset:
        register_wssis_splits(args.data_root)
        register_mrn_datasets(args.data_root)
        paths = render_dataset(args.dataset, args.output, args.max_images, args.scale,
                               skip_bad_images=args.skip_bad_images)
    else:
        paths = render_coco_json(args.json, args.output, args.image_root, args.max_images, args.scale,
                                 only_annotated=not args.all_images, skip_bad_images=args.skip_bad_images)
    logger.info(f"Wrote {len(paths)} images to {args.output}")
    return paths


if __name__ == "__main__":
    run_cli(main)  # one "error: ..." line for bad input (--traceback: all of it)
