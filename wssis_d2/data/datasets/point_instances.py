"""Load and register point-label jsons (PointWSSIS "points" files, PointSup-style files).

A point-label json is COCO-like (``images``, ``categories``, ``annotations``) and each annotation has
``point_coords`` ([[x, y], ...], continuous pixel coordinates: pixel (row i, col j) has centre
(j + 0.5, i + 0.5)), ``point_labels`` ([1 or 0, ...]: 1 on the object, 0 off it) and ``category_id``;
no ``segmentation``, ``bbox`` or ``area`` is needed.

Dataset dicts produced (detectron2 standard format, without boxes)::

    {"file_name", "height", "width", "image_id",
     "label_kind": "points",
     "annotations": [{"id": source annotation id,
                      "category_id": contiguous id in [0, #classes),
                      "point_coords": [[x, y], ...],   # positive points only (label 1)
                      "point_labels": [1, ...],
                      "iscrowd": 0}, ...]}

Crowd annotations (``iscrowd`` 1) are skipped: a crowd region cannot be one clicked object.
"""
import logging
import os

import numpy as np
from detectron2.data import MetadataCatalog
from detectron2.structures import BoxMode

from ..categories import category_metadata
from ..json_io import load_json
from ..validation import check_coco

__all__ = ["load_point_json", "point_records_from_coco", "register_point_instances"]

logger = logging.getLogger(__name__)


def _category_map(meta, categories, json_file):
    """Dataset category id -> contiguous id, from the metadata, or from the json
    (:func:`~wssis_d2.data.categories.category_metadata`) and then stored in the metadata."""
    id_map = getattr(meta, "thing_dataset_id_to_contiguous_id", None) if meta is not None else None
    if id_map is not None:
        return {int(k): v for k, v in id_map.items()}
    cats = category_metadata(categories, json_file)
    if meta is not None:
        meta.set(**cats)
    return cats["thing_dataset_id_to_contiguous_id"]


def _positive_points(ann, where):
    """Positive points of one annotation as ([[x, y], ...], [1, ...]); ValueError when none."""
    coords = ann.get("point_coords")
    if not coords:
        raise ValueError(f"{where}: no point (missing or empty point_coords)")
    labels = ann.get("point_labels", [1] * len(coords))
    arr = np.asarray(coords, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2 or len(labels) != len(arr) or not np.isfinite(arr).all():
        raise ValueError(f"{where}: point_coords must be [[x, y], ...] with one point_labels entry "
                         f"each, got {coords!r} / {labels!r}")
    pos = [p for p, lab in zip(arr.tolist(), labels) if int(lab) == 1]
    if not pos:
        raise ValueError(f"{where}: no positive point (point_labels {labels!r})")
    return pos, [1] * len(pos)


def load_point_json(json_file, image_root, dataset_name=None, missing_hint=None):
    """Load a point-label json into detectron2 dataset dicts (format in the module docstring).

    Args:
        json_file (str): path of the json.
        image_root (str): directory the images' ``file_name`` are relative to.
        dataset_name (str or None): if given, its metadata's ``thing_dataset_id_to_contiguous_id``
            maps category ids (it is derived from the json's categories and stored when absent).
        missing_hint (str or None): added to the error when the file does not exist.

    Raises:
        ValueError naming the file, the annotation id and image id, for an annotation without a
        (positive) point, with a category the metadata lacks, or with an unknown image id.
    """
    coco = load_json(json_file, hint=missing_hint)
    return point_records_from_coco(coco, json_file, image_root, dataset_name)


def point_records_from_coco(coco, json_file, image_root, dataset_name=None):
    """``load_point_json`` on an already loaded (or built in memory) point-label dict ``coco``;
    ``json_file`` only names the source in messages. An annotation's optional ``bbox`` (XYWH, pixels:
    the true box, e.g. joined from the points_gt file) is kept with ``bbox_mode`` XYWH_ABS."""
    check_coco(coco, json_file, "points")  # keys, types, ids, points inside their image (WSSISInputError)
    meta = MetadataCatalog.get(dataset_name) if dataset_name else None
    id_map = _category_map(meta, coco["categories"], json_file)

    records, by_image = [], {}
    for img in sorted(coco["images"], key=lambda im: im["id"]):
        record = {
            "file_name": os.path.join(image_root, img["file_name"]),
            "height": img["height"],
            "width": img["width"],
            "image_id": img["id"],
            "label_kind": "points",
            "annotations": [],
        }
        records.append(record)
        by_image[img["id"]] = record
    num_crowd = 0
    for ann in coco["annotations"]:
        where = f"{json_file}: annotation id {ann.get('id')} (image id {ann.get('image_id')})"
        if ann.get("image_id") not in by_image:
            raise ValueError(f"{where}: image id not in the file's images")
        if ann.get("iscrowd", 0):
            num_crowd += 1
            continue
        if ann.get("category_id") not in id_map:
            raise ValueError(f"{where}: category_id {ann.get('category_id')} is not in the dataset's "
                             f"categories {sorted(id_map)}")
        coords, labels = _positive_points(ann, where)
        record = {
            "id": ann.get("id"),
            "category_id": id_map[ann["category_id"]],
            "point_coords": coords,
            "point_labels": labels,
            "iscrowd": 0,
        }
        if "bbox" in ann:
            record["bbox"], record["bbox_mode"] = list(ann["bbox"]), BoxMode.XYWH_ABS
        by_image[ann["image_id"]]["annotations"].append(record)
    if num_crowd:
        logger.info(f"{json_file}: skipped {num_crowd} crowd annotations (not point-labelable)")
    logger.info(f"Loaded {len(records)} point-labeled images from {json_file}")
    return records


def register_point_instances(name, metadata, json_file, image_root, *, missing_hint=None):
    """Register a point-label json as dataset ``name`` (lazily: the file is read on first use), through
    :func:`~.register.register_dataset` (kind "points": the same name with the same file is a no-op, with
    another file an error).

    Metadata set: the given ``metadata`` (e.g. thing_classes, thing_dataset_id_to_contiguous_id),
    ``json_file``, ``image_root`` and ``label_kind="points"``. No ``evaluator_type``: a points set
    has no masks to evaluate against (use its points_gt set). Returns True when newly registered.
    """
    from .register import register_dataset  # register.py loads point files with load_point_json

    return register_dataset(name, json_file, "points", image_root, metadata, hint=missing_hint)
