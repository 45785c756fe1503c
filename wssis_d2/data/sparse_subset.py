"""A sparse labelling of a dataset: a crop of one fully-labelled image that holds a few objects, plus the first
clicked images (issue 35's measured case, ``datasets/make_sparse_subset.py``).

:func:`sparse_window` finds the smallest square window (side a multiple of ``step``) of an image that meets
exactly ``n`` objects, each with at least ``min_inside`` of its box inside (so that the crop stays a fully
labelled image: every object it meets is labelled, at most a small part of each cut off). :func:`crop_full`
crops the masks to it (the part inside is the object's mask in the crop).
"""
from typing import Optional, Sequence, Tuple

import numpy as np

from .coco_masks import decode_segmentation, mask_annotation

__all__ = ["sparse_window", "crop_full"]


def sparse_window(boxes: np.ndarray, height: int, width: int, n: int, *, min_inside: float = 0.6,
                  step: int = 8) -> Optional[Tuple[int, int, int]]:
    """(x0, y0, side) of the smallest square window meeting exactly ``n`` of the (K, 4) XYXY ``boxes`` (image
    px), each with >= ``min_inside`` of its box area inside; None when there is none. Windows are scanned on
    a ``step``-px grid, smallest side first, then top to bottom, left to right."""
    b = np.asarray(boxes, float).reshape(-1, 4)
    area = np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1e-6)
    for side in range(step, min(height, width) + 1, step):
        ys, xs = np.meshgrid(np.arange(0, height - side + 1, step), np.arange(0, width - side + 1, step),
                             indexing="ij")
        x0, y0 = xs.reshape(-1, 1).astype(float), ys.reshape(-1, 1).astype(float)  # (W, 1) windows
        iw = np.clip(np.minimum(b[:, 2], x0 + side) - np.maximum(b[:, 0], x0), 0, None)
        ih = np.clip(np.minimum(b[:, 3], y0 + side) - np.maximum(b[:, 1], y0), 0, None)
        inside = iw * ih / area  # (W, K)
        meets = inside > 0
        ok = (meets.sum(1) == n) & np.all(~meets | (inside >= min_inside), axis=1)
        if ok.any():
            k = int(np.flatnonzero(ok)[0])
            return int(x0[k, 0]), int(y0[k, 0]), side
    return None


def crop_full(image: dict, annotations: Sequence[dict], window: Tuple[int, int, int], file_name: str,
              image_id: int) -> Tuple[dict, list]:
    """(image entry, annotations) of the crop ``window`` (x0, y0, side) of ``image`` with its ``annotations``
    (COCO, any mask kind): masks cropped and re-encoded as RLE, empty ones dropped, ids kept."""
    x0, y0, side = window
    out = []
    for a in annotations:
        mask = decode_segmentation(a["segmentation"], image["height"], image["width"])[y0:y0 + side, x0:x0 + side]
        if not mask.any():
            continue
        out.append(mask_annotation(mask, a["id"], image_id, a["category_id"]))
    return {"id": image_id, "file_name": file_name, "height": side, "width": side}, out
