"""Checks of COCO-style input files at load time, before any training or inference starts.

:func:`check_coco` looks at a loaded instances / points / pseudo-label dict and raises
:class:`~wssis_d2.utils.errors.WSSISInputError` naming the file, the key, the image or annotation id
and what is wrong, for:

* a top level that is not an object, or ``images`` / ``annotations`` / ``categories`` missing or not
  lists (``categories`` may be absent from a pseudo-label file only);
* an image without an integer ``id``, a string ``file_name`` or positive integer ``height`` / ``width``;
* duplicated image, annotation or category ids;
* an annotation without an integer ``id``, whose ``image_id`` is not an image of the file (a pseudo-label
  file with empty ``images`` / ``categories`` lists is let through: hand-made lists of predictions), without a
  ``category_id`` ("a point without a class") or with one that is not in the categories;
* a ``segmentation`` that is neither a polygon list nor an RLE dict, a ``bbox`` that is not four finite
  numbers with non-negative width and height;
* ``point_coords`` that are not ``[[x, y], ...]`` (one ``point_labels`` entry each), NaN, infinite,
  negative, or outside the image (continuous pixel coordinates: the image spans [0, W] x [0, H]).

Ids 0 are valid here (evaluation remaps annotation ids for pycocotools, see
:func:`wssis_d2.evaluation.ids.one_based_annotation_ids`); category ids may have gaps: they are mapped
to contiguous ids sorted by id, as detectron2 does.
"""
import os
from collections import Counter

import numpy as np

from ..utils.errors import WSSISInputError
from .json_io import load_json

__all__ = ["as_coco", "check_coco", "load_coco"]

KINDS = ("instances", "points", "pseudo")


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _duplicates(ids, what, json_file):
    if len(set(ids)) != len(ids):
        dup = sorted(i for i, n in Counter(ids).items() if n > 1)
        shown = ", ".join(str(i) for i in dup[:10]) + (f" (and {len(dup) - 10} more)" if len(dup) > 10 else "")
        raise WSSISInputError(f"{json_file}: duplicated {what} ids {shown}")


def _check_images(images, json_file):
    sizes = {}
    for k, img in enumerate(images):
        if not isinstance(img, dict) or not _is_int(img.get("id")):
            got = img.get("id") if isinstance(img, dict) else img
            raise WSSISInputError(f"{json_file}: images[{k}]: key 'id' must be an integer, got {got!r}")
        where = f"{json_file}: image id {img['id']}"
        if not isinstance(img.get("file_name"), str) or not img["file_name"]:
            raise WSSISInputError(f"{where}: key 'file_name' must be a non-empty string, got {img.get('file_name')!r}")
        for key in ("height", "width"):
            if not _is_int(img.get(key)) or img[key] <= 0:
                raise WSSISInputError(f"{where}: key '{key}' must be a positive integer, got {img.get(key)!r}")
        sizes[img["id"]] = (img["width"], img["height"])
    _duplicates([img["id"] for img in images], "image", json_file)
    return sizes


def _check_categories(categories, json_file):
    for k, cat in enumerate(categories):
        if not isinstance(cat, dict) or not _is_int(cat.get("id")):
            got = cat.get("id") if isinstance(cat, dict) else cat
            raise WSSISInputError(f"{json_file}: categories[{k}]: key 'id' must be an integer, got {got!r}")
        if not isinstance(cat.get("name"), str):
            raise WSSISInputError(f"{json_file}: category id {cat['id']}: key 'name' must be a string, "
                                  f"got {cat.get('name')!r}")
    ids = [c["id"] for c in categories]
    _duplicates(ids, "category", json_file)
    return set(ids)


def _check_points(ann, size, where):
    coords = ann["point_coords"]
    try:
        arr = np.asarray(coords, dtype=np.float64)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.ndim != 2 or arr.shape[1] != 2:
        raise WSSISInputError(f"{where}: key 'point_coords' must be [[x, y], ...], got {coords!r}")
    labels = ann.get("point_labels")
    if labels is not None and (not isinstance(labels, list) or len(labels) != len(arr)
                               or not all(_is_num(v) for v in labels)):
        raise WSSISInputError(f"{where}: key 'point_labels' must be a list of numbers, one per point "
                              f"({len(arr)}), got {labels!r}")
    width, height = size
    bad = ~np.isfinite(arr).all(axis=1)
    bad |= (arr < 0).any(axis=1) | (arr[:, 0] > width) | (arr[:, 1] > height)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        x, y = coords[k]
        why = ("is not finite" if not np.isfinite(arr[k]).all() else "is negative" if (arr[k] < 0).any()
               else f"is outside the image (width {width}, height {height})")
        raise WSSISInputError(f"{where}: point {k} ({x}, {y}) {why}")


def _check_annotation(ann, k, sizes, category_ids, json_file, kind):
    if not isinstance(ann, dict) or not _is_int(ann.get("id")):
        got = ann.get("id") if isinstance(ann, dict) else ann
        raise WSSISInputError(f"{json_file}: annotations[{k}]: key 'id' must be an integer, got {got!r}")
    where = f"{json_file}: annotation id {ann['id']} (image id {ann.get('image_id')})"
    if ann.get("image_id") not in sizes:
        if not (kind == "pseudo" and not sizes):  # a hand-made pseudo-label list may come without images
            raise WSSISInputError(f"{where}: key 'image_id' is not an image id of the file")
        if not _is_int(ann.get("image_id")):
            raise WSSISInputError(f"{where}: key 'image_id' must be an integer")
    if "category_id" not in ann:
        raise WSSISInputError(f"{where}: no 'category_id' (every annotation needs a class)")
    if category_ids is not None and ann["category_id"] not in category_ids:
        raise WSSISInputError(f"{where}: category_id {ann['category_id']!r} is not in the categories "
                              f"{sorted(category_ids)}")
    segm = ann.get("segmentation")
    if segm is not None and not (isinstance(segm, list) or (isinstance(segm, dict) and "counts" in segm
                                                            and "size" in segm)):
        raise WSSISInputError(f"{where}: key 'segmentation' must be a list of polygons or an RLE dict with "
                              f"'counts' and 'size', got {type(segm).__name__}")
    if isinstance(segm, list) and not all(isinstance(p, list) and all(_is_num(v) for v in p) for p in segm):
        raise WSSISInputError(f"{where}: key 'segmentation' must be a list of polygons [x1, y1, x2, y2, ...]")
    box = ann.get("bbox")
    if box is not None and not (isinstance(box, list) and len(box) == 4 and all(_is_num(v) for v in box)
                                and np.isfinite(box).all() and box[2] >= 0 and box[3] >= 0):
        raise WSSISInputError(f"{where}: key 'bbox' must be [x, y, width, height] (finite, width and height "
                              f">= 0), got {box!r}")
    if "point_coords" in ann and ann["image_id"] in sizes:
        _check_points(ann, sizes[ann["image_id"]], where)
    elif kind == "points" and not ann.get("iscrowd", 0):
        raise WSSISInputError(f"{where}: no point (no 'point_coords' in a point-label file)")


def check_coco(coco, json_file="<json>", kind="instances"):
    """Raise :class:`WSSISInputError` on the first problem of ``coco`` (module docstring); returns it.

    Args:
        coco (dict): the loaded json.
        json_file (str): names the source in messages.
        kind (str): "instances" (masks), "points" (every non-crowd annotation has ``point_coords``) or
            "pseudo" (a pseudo-label export: ``categories`` optional).
    """
    assert kind in KINDS, kind
    if not isinstance(coco, dict):
        raise WSSISInputError(f"{json_file}: the top level must be a json object with 'images', 'annotations' "
                              f"and 'categories', got {type(coco).__name__}")
    required = ("images", "annotations") if kind == "pseudo" else ("images", "annotations", "categories")
    for key in required + (("categories",) if kind == "pseudo" and "categories" in coco else ()):
        if key not in coco:
            raise WSSISInputError(f"{json_file}: missing key '{key}'")
        if not isinstance(coco[key], list):
            raise WSSISInputError(f"{json_file}: key '{key}' must be a list, got {type(coco[key]).__name__}")
    sizes = _check_images(coco["images"], json_file)
    category_ids = _check_categories(coco["categories"], json_file) if coco.get("categories") else None
    for k, ann in enumerate(coco["annotations"]):
        _check_annotation(ann, k, sizes, category_ids, json_file, kind)
    _duplicates([a["id"] for a in coco["annotations"]], "annotation", json_file)
    return coco


def load_coco(path, kind="instances", hint=None):
    """``load_json`` (missing file: ``FileNotFoundError`` with ``hint``; bad json: ``WSSISInputError``)
    followed by :func:`check_coco`."""
    return check_coco(load_json(path, hint=hint), str(path), kind)


def as_coco(obj, kind="instances"):
    """A COCO dict given as the dict itself, or as a path (``load_coco(obj, kind)``)."""
    return load_coco(obj, kind) if isinstance(obj, (str, os.PathLike)) else obj
