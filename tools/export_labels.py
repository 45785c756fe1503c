#!/usr/bin/env python
"""Export a COCO instances json (the pipeline's labels.json, tools/predict.py's predictions.json, or a
point-label json) to a labeling or microscopy tool (wssis_d2/formats/, docs/DATA.md "Masks back into your
tool"):

    # review and correct: labelme json per image / CVAT 1.1 XML (outer-contour polygons)
    python tools/export_labels.py --json output/custom/labels.json --format labelme --output review/
    python tools/export_labels.py --json output/custom/labels.json --format cvat --output review_cvat/
    # label images for Cellpose (<stem>_masks.tif), StarDist (--layout stardist: masks/<name>), napari, Fiji
    python tools/export_labels.py --json labels.json --format label-images --output masks/ [--overlap area]
    # a Cell Tracking Challenge RES folder (maskTTT.tif + res_track.txt), QuPath GeoJSON, Label Studio tasks
    python tools/export_labels.py --json labels.json --format ctc --output 01_RES/
    python tools/export_labels.py --json labels.json --format qupath --output geojson/ [--object-type annotation]
    python tools/export_labels.py --json labels.json --format labelstudio --output ls/ [--polygons]

Overlapping masks in label images / CTC: each pixel goes to one object (--overlap), every object keeps its
click pixel, objects left without a pixel are counted and listed (label_images_info.json / ctc_info.json).
"""
import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from wssis_d2.formats.exports import EXPORT_FORMATS, add_export_arguments, export_labels, export_options  # noqa: E402
from wssis_d2.utils.errors import run_cli  # noqa: E402
from wssis_d2.utils.preflight import check_output_dir  # noqa: E402


def print_result(fmt, output, counts):
    """Print what was written (and, for Label Studio, the labeling config to paste)."""
    print(f"{output}: {counts}")
    config = os.path.join(output, "labeling_config.xml")
    if fmt == "labelstudio" and os.path.isfile(config):
        print(f"Label Studio labeling config ({config}; Settings > Labeling Interface > Code):")
        print(open(config).read())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", required=True, help="COCO instances json (labels.json, predictions.json)")
    p.add_argument("--format", required=True, choices=sorted(EXPORT_FORMATS))
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--image-root", default=None, help="image folder (default: the json's info.image_root)")
    add_export_arguments(p)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        options = export_options(args, args.format)
        check_output_dir(args.output)
        counts = export_labels(args.json, args.format, args.output, args.image_root, **options)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}")
    print_result(args.format, args.output, counts)
    return counts


if __name__ == "__main__":
    run_cli(main)  # one "error: ..." line for bad input (--traceback: all of it)
