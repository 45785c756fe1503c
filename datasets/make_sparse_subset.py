#!/usr/bin/env python
"""A sparse labelling of a prepared dataset (issue 35's measured case): a square crop of the first fully-labelled
image that meets exactly --objects objects (wssis_d2/data/sparse_subset.py), written as a PNG beside the
images, as the only full image, and the clicks (and their true masks) of the first --click-images clicked
images. Writes into --output-dir (under --image-root: the jsons' file_name stay relative to it)
full.json, points.json, points_gt.json.

    python datasets/make_sparse_subset.py --image-root datasets/cells_psc --objects 5 --click-images 10 \\
        --output-dir datasets/cells_psc/sparse
"""
import argparse
import os
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from wssis_d2.data.images import read_image  # noqa: E402
from wssis_d2.data.json_io import write_json_atomic  # noqa: E402
from wssis_d2.data.sparse_subset import crop_full, sparse_window  # noqa: E402
from wssis_d2.data.validation import load_coco  # noqa: E402
from wssis_d2.utils.errors import WSSISInputError, run_cli  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image-root", required=True, help="folder the jsons' file_name are relative to")
    p.add_argument("--full", default=None, help="fully-labelled COCO json (default <image-root>/full.json)")
    p.add_argument("--points", default=None, help="point-label json (default <image-root>/points.json)")
    p.add_argument("--points-gt", default=None, help="true masks of the clicked images (default "
                                                     "<image-root>/points_gt.json; '' for none)")
    p.add_argument("--objects", type=int, default=5, help="objects the crop meets")
    p.add_argument("--click-images", type=int, default=10, help="first clicked images kept")
    p.add_argument("--output-dir", required=True, help="under --image-root")
    args = p.parse_args(argv)
    root = os.path.abspath(args.image_root)
    out = os.path.abspath(args.output_dir)
    if os.path.commonpath([root, out]) != root:
        raise WSSISInputError(f"--output-dir {out} must lie under --image-root {root} (the crop's file_name)")
    full = load_coco(args.full or os.path.join(root, "full.json"))
    points = load_coco(args.points or os.path.join(root, "points.json"), "points")
    image = full["images"][0]
    anns = [a for a in full["annotations"] if a["image_id"] == image["id"] and not a.get("iscrowd", 0)]
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], float)
    window = sparse_window(boxes, image["height"], image["width"], args.objects)
    if window is None:
        raise WSSISInputError(f"image {image['id']} ({image['file_name']}): no square window meets exactly "
                              f"{args.objects} objects")
    x0, y0, side = window
    os.makedirs(out, exist_ok=True)
    name = f"{os.path.splitext(os.path.basename(image['file_name']))[0]}_crop{x0}_{y0}_{side}.png"
    pixels = read_image(os.path.join(root, image["file_name"]), "RGB", image["id"])[y0:y0 + side, x0:x0 + side]
    Image.fromarray(pixels).save(os.path.join(out, name))
    img, crop_anns = crop_full(image, anns, window, os.path.relpath(os.path.join(out, name), root), image["id"])
    info = {"tool": "datasets/make_sparse_subset.py", "source": image["file_name"], "window_xy_side": list(window)}
    write_json_atomic({"info": info, "images": [img], "annotations": crop_anns, "categories": full["categories"]},
                      os.path.join(out, "full.json"))
    keep = {im["id"] for im in points["images"][:args.click_images]}
    subset = lambda d: dict(d, images=[im for im in d["images"] if im["id"] in keep],  # noqa: E731
                            annotations=[a for a in d["annotations"] if a["image_id"] in keep])
    write_json_atomic(subset(points), os.path.join(out, "points.json"))
    gt = args.points_gt if args.points_gt is not None else os.path.join(root, "points_gt.json")
    if gt:
        write_json_atomic(subset(load_coco(gt)), os.path.join(out, "points_gt.json"))
    n_clicks = sum(a["image_id"] in keep for a in points["annotations"])
    print(f"{out}: full.json = {side}-px crop at ({x0}, {y0}) of {image['file_name']} with {len(crop_anns)} objects; "
          f"points.json = {len(keep)} images, {n_clicks} clicks")


if __name__ == "__main__":
    run_cli(main)  # one "error: ..." line for bad input (--traceback: all of it)
