"""COCO ``segmentation`` <-> binary masks: decode polygons / RLE, encode masks as compressed RLE, and the one
rule for masks that cannot be used (:func:`clean_segmentations`).

Every kind of ``segmentation`` may be mixed in one file: polygon lists (several polygons = one instance of
several parts, their union), compressed RLE (``counts`` a string) and uncompressed RLE (``counts`` a list,
as COCO stores crowd regions). Crowd regions (``iscrowd`` 1) are kept as they are; consumers decide (training
ignores them as detectron2 does, evaluation keeps them as COCOeval's ignore regions, points skip them).
"""
import logging
from collections import Counter
from typing import List, Sequence, Tuple

import numpy as np
import pycocotools.mask as mask_util

__all__ = ["decode_segmentation", "encode_masks", "to_rle", "mask_annotation", "clean_segmentations",
           "clean_mask_records", "is_valid_polygon"]

logger = logging.getLogger(__name__)


def is_valid_polygon(poly) -> bool:
    """A polygon pycocotools can rasterise: at least 3 points (6 numbers), an even count."""
    return len(poly) >= 6 and len(poly) % 2 == 0


def _rle_area(segm: dict) -> int:
    counts = segm["counts"]
    if isinstance(counts, list):
        return int(sum(counts[1::2]))  # uncompressed runs alternate 0s and 1s, starting with 0s
    return rle_areas([segm])[0]


def rle_areas(rles: Sequence[dict]) -> List[int]:
    """Pixel counts of compressed RLEs (counts as bytes or str), in chunks of 255: pycocotools
    2.0.x's ``area()`` fails on longer lists under numpy 2 (its list length goes through a uint8)."""
    return [int(a) for i in range(0, len(rles), 255) for a in mask_util.area(list(rles[i:i + 255]))]


def clean_segmentations(annotations: Sequence[dict]) -> Tuple[List[dict], Counter]:
    """Drop what cannot be a mask, with counts (the annotations given are not modified).

    * A polygon with fewer than 3 points (fewer than 6 numbers) or an odd count is dropped from its
      instance (pycocotools would crash on it or read past it).
    * An annotation whose mask is then empty is dropped: no polygon left (or ``segmentation`` ``[]``) or an
      RLE without a foreground pixel (polygons are not rasterised here: load time stays one cheap pass).
      Annotations without a ``segmentation`` key are kept as they are (point labels).

    Args:
        annotations: COCO-style annotations.

    Returns:
        (kept annotations, Counter with "degenerate_polygons" and "empty_masks").
    """
    kept, counts = [], Counter()
    for ann in annotations:
        segm = ann.get("segmentation", None)
        if isinstance(segm, list):
            polys = [p for p in segm if is_valid_polygon(p)]
            if len(polys) != len(segm):
                counts["degenerate_polygons"] += len(segm) - len(polys)
                ann = dict(ann, segmentation=polys)
            empty = not polys
        elif isinstance(segm, dict):
            empty = _rle_area(segm) == 0
        else:
            empty = False
        if empty:
            counts["empty_masks"] += 1
            continue
        kept.append(ann)
    return kept, counts


def decode_segmentation(segm, height, width):
    """Rasterise a COCO segmentation.

    Args:
        segm: a list of polygons ``[[x0, y0, x1, y1, ...], ...]`` in continuous pixel coordinates,
            an uncompressed RLE ``{"size": [H, W], "counts": [int, ...]}`` or a compressed RLE
            ``{"size": [H, W], "counts": str or bytes}``.
        height, width (int): image size.

    Returns:
        np.ndarray: (H, W) bool mask.
    """
    if isinstance(segm, list):
        polygons = [p for p in segm if is_valid_polygon(p)]
        if not polygons:
            return np.zeros((height, width), bool)
        rle = mask_util.merge(mask_util.frPyObjects(polygons, height, width))
    elif isinstance(segm, dict):
        if list(segm.get("size", [])) != [height, width]:
            raise ValueError(f"RLE size {segm.get('size')} differs from the image size {[height, width]}")
        if isinstance(segm["counts"], list):
            rle = mask_util.frPyObjects(segm, height, width)
        else:
            rle = dict(segm)
            if isinstance(rle["counts"], str):
                rle["counts"] = rle["counts"].encode("ascii")
    else:
        raise ValueError(f"Unsupported segmentation of type {type(segm).__name__}")
    return mask_util.decode(rle).astype(bool)


def encode_masks(masks: np.ndarray) -> list:
    """(N, H, W) bool masks -> N compressed COCO RLEs ``{"size": [H, W], "counts": str}`` (json-ready)."""
    if len(masks) == 0:
        return []
    rles = mask_util.encode(np.asfortranarray(np.asarray(masks).transpose(1, 2, 0).astype(np.uint8)))
    for r in rles:
        r["counts"] = r["counts"].decode("ascii")
    return rles


def mask_annotation(mask, ann_id, image_id, category_id):
    """COCO annotation of an (H, W) bool mask: compressed RLE, ``bbox`` [x, y, w, h] and ``area`` in pixels
    (both from the RLE, by pycocotools), ``iscrowd`` 0."""
    rle = encode_masks(mask[None])[0]
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "segmentation": rle,
        "bbox": [float(v) for v in mask_util.toBbox(rle)],
        "area": float(mask_util.area(rle)),
        "iscrowd": 0,
    }


def log_cleaned(counts: Counter, source: str) -> None:
    """One log line with the counts of :func:`clean_segmentations` (nothing when nothing was dropped)."""
    if counts:
        logger.warning(f"{source}: dropped {counts['degenerate_polygons']} polygons with fewer than 3 points and "
                       f"{counts['empty_masks']} annotations with an empty mask")


def clean_mask_records(records: Sequence[dict], source: str) -> List[dict]:
    """:func:`clean_segmentations` on the annotations of detectron2 dataset dicts of a MASK set, in place;
    there an annotation without ``segmentation`` (detectron2's loader leaves ``[]`` out) is an empty mask too.
    Images left without annotations stay (detectron2's ``filter_empty_annotations`` decides). Returns them."""
    total = Counter()
    for r in records:
        anns = r.get("annotations", [])
        kept, counts = clean_segmentations([a for a in anns if "segmentation" in a])
        counts["empty_masks"] += sum("segmentation" not in a for a in anns)
        total += counts
        r["annotations"] = kept
    log_cleaned(total, source)
    return records


def to_rle(segm, height: int, width: int) -> dict:
    """Compressed RLE (counts as str or bytes; pycocotools reads both) of a COCO segmentation of any
    kind."""
    if isinstance(segm, dict) and not isinstance(segm.get("counts"), list):
        if list(segm.get("size", [])) != [height, width]:
            raise ValueError(f"RLE size {segm.get('size')} differs from the image size {[height, width]}")
        return dict(segm)
    return encode_masks(decode_segmentation(segm, height, width)[None])[0]
