#!/usr/bin/env python
"""Import point clicks from a labeling tool's export into a point-label json (docs/DATA.md).

    python datasets/import_points.py --format labelme --input clicks/ --image-root images/ \
        --categories full.json --output points.json

Formats: labelme (folder of labelme JSON files), cvat ("CVAT for images 1.1" XML), labelstudio (Label
Studio JSON export), coco-keypoints (COCO keypoints json), csv (file_name,x,y,category). Categories (ids,
names) come from --categories, a COCO json (normally the fully-labeled file), so the ids agree; new
image ids start after its largest one.
"""
import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from wssis_d2.formats.importers import POINT_FORMATS, PointImportError, import_points  # noqa: E402
from wssis_d2.utils.errors import run_cli  # noqa: E402
from wssis_d2.utils.preflight import check_output_file  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--format", required=True, choices=sorted(POINT_FORMATS))
    p.add_argument("--input", required=True, help="the export (file, or folder for labelme)")
    p.add_argument("--image-root", required=True, help="folder the images are under")
    p.add_argument("--categories", required=True, help="COCO json whose categories (and image ids) to use")
    p.add_argument("--output", required=True, help="point-label json to write")
    p.add_argument("--skip-unknown", action="store_true", help="skip (and count) clicks with an unknown label")
    args = p.parse_args(argv)
    check_output_file(args.output, "point json")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        info = import_points(args.format, args.input, args.image_root, args.categories, args.output,
                             skip_unknown=args.skip_unknown)
    except PointImportError as e:
        raise SystemExit(f"error: {e}")
    print(f"{args.output}: {info['num_images']} images, {info['num_clicks']} clicks "
          f"({info['num_images_without_clicks']} images without clicks, "
          f"{info['num_unknown_label_skipped']} unknown-label clicks skipped)")


if __name__ == "__main__":
    run_cli(main)  # one "error: ..." line for bad input (--traceback: all of it)
