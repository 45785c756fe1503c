#!/usr/bin/env python
"""Masks for clicks on new images with a trained model (docs/PREDICT.md).

    # one image, clicks "x,y,label;..." (labels: category names of --categories, else class indices)
    python tools/predict.py --config-file configs/CPU/SOLOv2_tiny.yaml --weights student.pth \\
        --image images/a.jpg --points "120.5,80,0;30,42.5,2" --output pred/ --overlay
    # a folder of clicked images from a labeling tool, back to the tool for review
    python tools/predict.py --config-file configs/CPU/SOLOv2_tiny.yaml --weights student.pth \\
        --images images/ --clicks clicks/ --format labelme --categories labels.json \\
        --output pred/ --export labelme --overlay [--review]
    # with a MaskRefineNet: --mrn-config configs/MRN/MRN_R18_cpu.yaml --mrn-weights mrn.pth

Writes ``<output>/predictions.json`` (the pseudo-label export's schema), with ``--export FORMAT`` the masks for
a tool in ``<output>/FORMAT/`` (labelme, cvat: review files; label-images, ctc, qupath, labelstudio: see
tools/export_labels.py), with ``--overlay`` ``<output>/overlays/*.png``.
An interrupted run continues where it stopped when run again (``--overwrite``: start over). Trailing
``KEY VALUE`` pairs override the model config (e.g. ``MODEL.WSSIS.PSEUDO_LABEL_MODE fixed``
``MODEL.DEVICE cuda``).
"""
import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from detectron2.utils.logger import setup_logger  # noqa: E402

from wssis_d2.formats.exports import EXPORT_FORMATS, add_export_arguments, export_options  # noqa: E402
from wssis_d2.predict import (CLICK_FORMATS, PointPredictor, export_points, predict_points,  # noqa: E402
                              single_image_points)
from wssis_d2.predict.config import add_model_arguments, model_configs  # noqa: E402
from wssis_d2.data.validation import load_coco  # noqa: E402
from wssis_d2.review.risk import ReviewSettings  # noqa: E402
from wssis_d2.utils.errors import WSSISInputError, run_cli  # noqa: E402
from wssis_d2.utils.preflight import check_output_dir  # noqa: E402


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(p)
    p.add_argument("--image", default=None, help="one image file (with --points)")
    p.add_argument("--points", default=None, help='clicks on --image: "x,y,label;x,y,label;..." (pixels)')
    p.add_argument("--images", default=None, help="image folder (with --clicks and --format)")
    p.add_argument("--clicks", default=None,
                   help="the labeling tool's export of the clicks (file, or folder for labelme)")
    p.add_argument("--format", default=None, choices=CLICK_FORMATS, help="format of --clicks")
    p.add_argument("--categories", default=None,
                   help="COCO json whose categories (names, ids) the model was trained on; default: the "
                        "class indices 0..NUM_CLASSES-1 are the labels")
    p.add_argument("--skip-unknown", action="store_true", help="skip (and count) clicks with an unknown label")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--export", default=None, choices=sorted(EXPORT_FORMATS),
                   help="also write the masks for a tool: review files (labelme, cvat), label-images, ctc, "
                        "qupath, labelstudio (options below; docs/DATA.md)")
    p.add_argument("--overlay", action="store_true", help="draw overlays/<image>.png")
    p.add_argument("--review", action="store_true",
                   help="rank the masks for review: flags and risk per click, orphans (likely missed clicks) per "
                        "image from a click-free pass, in <output>/review/ (review.md first); --export carries them")
    p.add_argument("--overwrite", action="store_true", help="discard an interrupted run's predictions")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_export_arguments(p)
    p.add_argument("opts", nargs=argparse.REMAINDER, help="model config overrides KEY VALUE ...")
    return p


def main(argv=None):
    args = get_parser().parse_args(argv)
    single, folder = (args.image, args.points), (args.images, args.clicks, args.format)
    if not ((all(single) and not any(folder)) or (all(folder) and not any(single))):
        raise WSSISInputError("give either --image and --points, or --images, --clicks and --format")
    try:
        options = export_options(args, args.export)
    except ValueError as e:
        raise WSSISInputError(str(e))
    check_output_dir(args.output)
    setup_logger(name="wssis_d2", abbrev_name="wssis")
    logger = logging.getLogger("wssis_d2.predict")
    cfg, mrn_cfg = model_configs(args)
    num_classes = cfg.MODEL.SOLOV2.NUM_CLASSES
    if args.image:
        points = single_image_points(args.image, args.points, args.categories, num_classes,
                                     skip_unknown=args.skip_unknown)
        image_root, source = os.path.dirname(os.path.abspath(args.image)), "--points"
    else:
        points = export_points(args.format, args.clicks, args.images, args.categories, num_classes,
                               skip_unknown=args.skip_unknown)
        image_root, source = args.images, os.path.abspath(args.clicks)
    predictor = PointPredictor(cfg, mrn_cfg)
    info = {"config_file": os.path.abspath(args.config_file),
            "mrn_config": os.path.abspath(args.mrn_config) if args.mrn_config else None,
            "clicks": source, "clicks_format": args.format or "--points",
            "categories_from": os.path.abspath(args.categories) if args.categories else "class indices"}
    areas_from = load_coco(args.categories, "pseudo") if args.review and args.categories else None
    res = predict_points(predictor, points, image_root, args.output, export=args.export, export_options=options,
                         overlay=args.overlay, overwrite=args.overwrite, info=info, progress=not args.no_progress,
                         review=ReviewSettings() if args.review else None,
                         areas_from=areas_from if areas_from and areas_from.get("annotations") else None)
    logger.info(f"{res['num_images']} images ({res['num_resumed']} from an earlier run), {res['num_clicks']} "
                f"clicks: {res['num_masks']} masks, {res['num_clicks_without_mask']} clicks without a mask")
    print(f"predictions: {res['predictions']}")
    if res["review"]:
        print(f"{args.export} files: {res['review']}")
    if res["overlays"]:
        print(f"overlays: {res['overlays']}")
    if res["ranked"]:
        print(f"review: {res['ranked']['review_md']}")
    return res


if __name__ == "__main__":
    run_cli(main)  # one "error: ..." line for bad input (--traceback: all of it)
