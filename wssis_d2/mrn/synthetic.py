"""A stand-in teacher for tests and demos: pseudo-label jsons made by corrupting GT masks.

:func:`make_corrupted_pseudo_json` writes what the point-guided exporter writes (same schema: RLE
``segmentation``, ``point``, ``point_ann_id``, ``score``, ``level``) with coarse masks that are the GT
masks eroded, dilated or shifted by a few pixels, so that MaskRefineNet training data, training and
refinement can be exercised without a trained SOLOv2 teacher.
"""
from typing import Optional

import cv2
import numpy as np
import pycocotools.mask as mask_util

from ..data.coco_masks import decode_segmentation, encode_masks
from ..data.point_rules import centroid_point

__all__ = ["corrupt_mask", "make_corrupted_pseudo_json"]


def corrupt_mask(mask: np.ndarray, rng: np.random.Generator, max_pixels: int = 4) -> np.ndarray:
    """Erode, dilate (square kernel of half-side 1..max_pixels) or shift (up to max_pixels in x and y)
    a (H, W) bool mask, chosen uniformly; an erosion that would empty the mask is skipped."""
    m = mask.astype(np.uint8)
    kind = int(rng.integers(3))
    r = int(rng.integers(1, max_pixels + 1))
    kernel = np.ones((2 * r + 1, 2 * r + 1), np.uint8)
    if kind == 0:
        out = cv2.dilate(m, kernel)
    elif kind == 1:
        out = cv2.erode(m, kernel)
        if not out.any():
            out = m
    else:
        dx, dy = (int(v) for v in rng.integers(-max_pixels, max_pixels + 1, size=2))
        out = np.zeros_like(m)
        h, w = m.shape
        ys, xs = slice(max(dy, 0), h + min(dy, 0)), slice(max(dx, 0), w + min(dx, 0))
        yd, xd = slice(max(-dy, 0), h + min(-dy, 0)), slice(max(-dx, 0), w + min(-dx, 0))
        out[ys, xs] = m[yd, xd]
        if not out.any():
            out = m
    return out.astype(bool)


def make_corrupted_pseudo_json(gt: dict, *, seed: int = 0, max_pixels: int = 4,
                               unknown_fraction: float = 0.0, image_root: Optional[str] = None,
                               source: str = "synthetic") -> dict:
    """Pseudo-label json (exporter schema) from a GT json: one coarse mask per non-crowd, non-empty GT
    instance, at the instance's centroid point (snapped into the mask).

    Args:
        gt: loaded COCO GT json.
        seed: corruption seed.
        max_pixels: corruption strength (see :func:`corrupt_mask`).
        unknown_fraction: fraction of annotations written with ``point_ann_id`` -1.
        image_root: recorded in ``info["image_root"]``.
        source: recorded in ``info["dataset"]``.
    """
    rng = np.random.default_rng(seed)
    images = {img["id"]: img for img in gt["images"]}
    anns = []
    for a in gt["annotations"]:
        if a.get("iscrowd", 0):
            continue
        img = images[a["image_id"]]
        mask = decode_segmentation(a["segmentation"], img["height"], img["width"])
        if not mask.any():
            continue
        coarse = corrupt_mask(mask, rng, max_pixels)
        rle = encode_masks(coarse[None])[0]
        x, y = centroid_point(mask)
        unknown = rng.random() < unknown_fraction
        anns.append({
            "id": len(anns) + 1,
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "segmentation": rle,
            "bbox": [float(v) for v in mask_util.toBbox(rle)],
            "area": float(mask_util.area(rle)),
            "iscrowd": 0,
            "score": 1.0,
            "point": [x, y],
            "level": 0,
            "point_ann_id": -1 if unknown else a["id"],
        })
    info = {"description": "GT masks corrupted by erosion / dilation / shift (a stand-in teacher)",
            "dataset": source, "seed": seed, "max_pixels": max_pixels}
    if image_root:
        info["image_root"] = image_root
    return {"info": info, "images": gt["images"], "categories": gt["categories"], "annotations": anns}


def main(argv=None):
    """``python -m wssis_d2.mrn.synthetic --gt GT.json --output PSEUDO.json [--seed S]``."""
    import argparse
    import os

    from ..data.json_io import load_json, write_json_atomic

    p = argparse.ArgumentParser(description="Stand-in teacher: pseudo-label json from corrupted GT masks.")
    p.add_argument("--gt", required=True, help="GT COCO json (masks)")
    p.add_argument("--output", required=True)
    p.add_argument("--image-root", default=None, help="recorded in info; default: the GT json's info, "
                                                      "else <gt dir>/../images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-pixels", type=int, default=4)
    p.add_argument("--unknown-fraction", type=float, default=0.0, help="share of point_ann_id -1")
    args = p.parse_args(argv)
    gt = load_json(args.gt)
    image_root = args.image_root or (gt.get("info") or {}).get("image_root")
    if not image_root:
        image_root = os.path.join(os.path.dirname(os.path.abspath(args.gt)), "..", "images")
    out = make_corrupted_pseudo_json(gt, seed=args.seed, max_pixels=args.max_pixels,
                                     unknown_fraction=args.unknown_fraction,
                                     image_root=os.path.abspath(image_root), source=args.gt)
    write_json_atomic(out, args.output)
    print(f"{args.output}: {len(out['annotations'])} pseudo-labels on {len(out['images'])} images")


if __name__ == "__main__":
    main()
