#!/usr/bin/env python
"""Import label images (0 = background, every other value one instance) into a COCO instances json
(docs/DATA.md, "Label images").

    python datasets/import_masks.py --images my_data/images --labels my_data/labels --category cell \
        --output my_data/full.json
    python datasets/import_masks.py --images stack.tif --labels labels.tif --category nucleus \
        --image-output my_data/frames --output my_data/full.json
    python datasets/import_masks.py --images my_data/images --labels my_data/labels \
        --categories my_data/categories.json --class-map my_data/classes.csv --output my_data/full.json

--images / --labels: a folder or one multi-frame TIFF stack each. Folders pair by name (same stem, a label
stem containing the image stem, else the same trailing number: man_seg007.tif <-> t007.tif), stacks by
index. The frames of an image stack are written to --image-output as PNG (16 bits kept). file_name is
relative to the images folder (or --image-output): register the json with that folder as image root.
"""
import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from wssis_d2.formats.label_images import import_label_images  # noqa: E402
from wssis_d2.utils.errors import run_cli  # noqa: E402
from wssis_d2.utils.preflight import check_output_dir, check_output_file  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", required=True, help="folder of images, or a multi-frame TIFF stack")
    p.add_argument("--labels", required=True, help="folder of label images (PNG / TIFF), or a TIFF stack")
    classes = p.add_mutually_exclusive_group(required=True)
    classes.add_argument("--category", help="the one class name of every instance")
    classes.add_argument("--categories", help="COCO json whose categories the class map refers to")
    p.add_argument("--class-map", help="CSV label,category[,image]: the class of each label value "
                   "(with --categories)")
    p.add_argument("--output", required=True, help="COCO instances json to write")
    p.add_argument("--image-output", help="folder for the frames of an image stack (PNG)")
    args = p.parse_args(argv)
    check_output_file(args.output, "COCO json")
    if args.image_output:
        check_output_dir(args.image_output, "image output folder")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    info = import_label_images(args.images, args.labels, args.output, category=args.category,
                               categories_json=args.categories, class_map_csv=args.class_map,
                               image_output=args.image_output)
    print(f"{args.output}: {info['num_images']} images ({info['num_empty_images']} without instances), "
          f"{info['num_annotations']} instances ({info['num_multi_piece_labels']} labels in several pieces), "
          f"pairing {info['pairing']}; image root {info['image_root']}")


if __name__ == "__main__":
    run_cli(main)  # one "error: ..." line for bad input (--traceback: all of it)
