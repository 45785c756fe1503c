#!/usr/bin/env python
"""Export a COCO instances json (the pipeline's labels.json, or a point-label json) to labelme or CVAT
so that masks can be corrected in the tool (wssis_d2/data/review_export.py: outer-contour polygons,
holes filled, multi-part masks as grouped polygons, flagged annotations marked).

    python tools/export_labels.py --json output/custom/labels.json --format labelme --output review/
    python tools/export_labels.py --json output/custom/labels.json --format cvat --output review_cvat/
"""
import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from wssis_d2.formats.review_export import EXPORT_FORMATS, export_labels  # noqa: E402
from wssis_d2.utils.errors import run_cli  # noqa: E402
from wssis_d2.utils.preflight import check_output_dir  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", required=True, help="COCO instances json (labels.json)")
    p.add_argument("--format", required=True, choices=sorted(EXPORT_FORMATS))
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--image-root", default=None, help="image folder (default: the json's info.image_root)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        check_output_dir(args.output)
        counts = export_labels(args.json, args.format, args.output, args.image_root)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}")
    print(f"{args.output}: {counts}")


if __name__ == "__main__":
    run_cli(main)  # one "error: ..." line for bad input (--traceback: all of it)
