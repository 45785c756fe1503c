#!/usr/bin/env python
"""Merge full GT and pseudo-labels into the student's training json ("full + pseudo").

    python tools/merge_pseudo_labels.py --full datasets/coco/wssis_splits/train2017_5p_s1_full.json \
        --pseudo output/coco/pseudo_R101_5p/pseudo_labels/coco_2017_train_5p_s1_points.json \
        --output datasets/coco/wssis_splits/train2017_5p_s1_full+pseudo.json

Image ids of the two files must be disjoint; annotations are renumbered; pseudo-labels keep their
score/point/level/point_ann_id; images without any annotation are dropped (rules:
``wssis_d2.pseudo.merge``). Register the result with ``wssis_d2.pseudo.register_pseudo_label_dataset``.
"""
import argparse

from wssis_d2.pseudo import merge_pseudo_label_files
from wssis_d2.utils.errors import run_cli
from wssis_d2.utils.preflight import check_output_file


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", required=True, help="COCO json of the fully-labeled images")
    parser.add_argument("--pseudo", required=True, help="pseudo-label json (PseudoLabelExporter)")
    parser.add_argument("--output", required=True, help="merged json to write (atomically)")
    args = parser.parse_args(argv)
    check_output_file(args.output, "merged json")
    info = merge_pseudo_label_files(args.full, args.pseudo, args.output)
    print(f"wrote {args.output}: {info['num_images']} images, {info['num_annotations']} annotations "
          f"({info['full']['num_annotations']} full + {info['pseudo']['num_annotations']} pseudo), "
          f"{info['num_images_dropped']} images without annotation dropped")


if __name__ == "__main__":
    run_cli(main)  # one "error: ..." line for bad input (--traceback: all of it)
