"""Pseudo-labels that agree with their clicks: the training set of the click round (``PSEUDO.CLICK_ROUND``, a
second teacher trained on the full masks plus the first teacher's pseudo-labels that it can trust).

A pseudo-label (exporter schema: RLE ``segmentation``, ``point`` [x, y] in continuous image px) agrees with its
click when its mask is not empty and holds the click's pixel (int(x), int(y)). Masks are decoded one image at
a time (pycocotools, all of an image's masks at once).
"""
import logging
from collections import defaultdict
from typing import Tuple

import numpy as np
import pycocotools.mask as mask_util

from ..data.coco_masks import to_rle

__all__ = ["agreeing_pseudo_labels"]

logger = logging.getLogger(__name__)


def agreeing_pseudo_labels(pseudo: dict) -> Tuple[dict, int]:
    """(``pseudo`` with only the annotations whose mask holds their click, number removed)."""
    images = {img["id"]: img for img in pseudo["images"]}
    by_image = defaultdict(list)
    for k, a in enumerate(pseudo["annotations"]):
        by_image[a["image_id"]].append(k)
    keep = np.zeros(len(pseudo["annotations"]), bool)
    for image_id, idx in by_image.items():
        img = images[image_id]
        h, w = img["height"], img["width"]
        anns = [pseudo["annotations"][k] for k in idx]
        masks = mask_util.decode([to_rle(a["segmentation"], h, w) for a in anns])  # (H, W, N)
        xy = np.array([a["point"] for a in anns], float).reshape(-1, 2)
        cols = np.clip(xy[:, 0].astype(int), 0, w - 1)
        rows = np.clip(xy[:, 1].astype(int), 0, h - 1)
        keep[idx] = masks[rows, cols, np.arange(len(anns))] > 0
    kept = [a for a, k in zip(pseudo["annotations"], keep) if k]
    removed = len(pseudo["annotations"]) - len(kept)
    logger.info(f"Pseudo-labels that hold their click: {len(kept)} of {len(keep)} ({removed} removed: the click "
                "outside the mask or an empty mask)")
    return dict(pseudo, annotations=kept), removed
