"""What the pseudo-labeler reads: point dataset dicts of a registered dataset, with true sizes on demand.

* A points set (metadata ``label_kind == "points"``) is loaded as registered. For the oracle_size mode the
  true box of every point is joined from its GT file (metadata ``points_gt_dataset``, matched by
  annotation id) and kept as the annotation's ``bbox``; the mapper turns it into ``gt_sizes``.
* A set with masks (full, points_gt, a plain COCO json: anything with a ``json_file``) is turned into
  a points set: one point per non-crowd annotation by the point rule of its json's ``info``
  (``point_rule``/``seed`` as written by ``prepare_wssis_splits.py``; default centroid, seed 0), exactly
  as the split tool computes them, each keeping its annotation ``id`` and true ``bbox``. That is how
  oracle pseudo-labels (e.g. MaskRefineNet training data on full images) are made.
"""
import logging
import os

from detectron2.data import DatasetCatalog, MetadataCatalog, build_detection_test_loader
from detectron2.structures import BoxMode

from ..data.dataset_mapper import WSSISDatasetMapper
from ..data.images import check_image_files
from ..data.datasets.point_instances import point_records_from_coco
from ..data.json_io import load_json
from ..data.splits import point_annotation

__all__ = [
    "is_pseudo_label_dataset",
    "pseudo_label_dataset_dicts",
    "build_pseudo_label_loader",
    "default_export_path",
]

logger = logging.getLogger(__name__)


def is_pseudo_label_dataset(cfg, dataset_name):
    """Whether ``--eval-only`` exports pseudo-labels for ``dataset_name``: always for a points set,
    and for every set when ``MODEL.WSSIS.EXPORT_PSEUDO_LABELS`` is True."""
    return bool(cfg.MODEL.WSSIS.EXPORT_PSEUDO_LABELS) or (
        MetadataCatalog.get(dataset_name).get("label_kind", None) == "points"
    )


def _gt_boxes_by_id(gt_dataset):
    meta = MetadataCatalog.get(gt_dataset)
    json_file = meta.get("json_file", None)
    if json_file is None:
        raise ValueError(f"Oracle pseudo-labels: GT dataset {gt_dataset!r} has no json_file in its metadata")
    coco = load_json(json_file)
    return {a["id"]: a["bbox"] for a in coco["annotations"] if "bbox" in a}, json_file


def _attach_gt_boxes(dicts, dataset_name):
    """Add the true ``bbox`` (XYWH) of every point annotation, from the set's points_gt file."""
    gt_dataset = MetadataCatalog.get(dataset_name).get("points_gt_dataset", None)
    if gt_dataset is None:
        raise ValueError(
            f"Pseudo-label mode 'oracle_size' needs true instance sizes, but points set {dataset_name!r} has no "
            "'points_gt_dataset' in its metadata (register it with one, or pseudo-label its points_gt set, "
            "whose points are computed from the masks)"
        )
    boxes, json_file = _gt_boxes_by_id(gt_dataset)
    for record in dicts:
        for ann in record["annotations"]:
            if "bbox" in ann:
                continue
            if ann.get("id") not in boxes:
                raise ValueError(
                    f"Oracle pseudo-labels: point annotation id {ann.get('id')} (image id {record['image_id']}) "
                    f"of {dataset_name!r} has no box in its GT file {json_file}"
                )
            ann["bbox"], ann["bbox_mode"] = list(boxes[ann["id"]]), BoxMode.XYWH_ABS
    return dicts


def _points_from_masks(dataset_name):
    """Point dataset dicts of a mask dataset (module docstring), with ids and true boxes."""
    meta = MetadataCatalog.get(dataset_name)
    json_file, image_root = meta.get("json_file", None), meta.get("image_root", None)
    if json_file is None or image_root is None:
        raise ValueError(
            f"Cannot pseudo-label {dataset_name!r}: it is not a points set and its metadata lacks json_file / "
            "image_root to compute points from its masks"
        )
    coco = load_json(json_file)
    info = coco.get("info") or {}
    rule, seed = info.get("point_rule") or "centroid", int(info.get("seed") or 0)
    images = {img["id"]: img for img in coco["images"]}
    annotations = []
    for ann in coco["annotations"]:
        if ann.get("iscrowd", 0):
            continue
        point = point_annotation(ann, images[ann["image_id"]], rule, seed, json_file)
        if point is None:  # empty mask: nothing to click
            continue
        if "bbox" in ann:
            point["bbox"] = ann["bbox"]
        annotations.append(point)
    logger.info(f"{dataset_name}: {len(annotations)} points computed from the masks of {json_file} "
                f"(rule {rule!r}, seed {seed})")
    points = {"images": coco["images"], "categories": coco["categories"], "annotations": annotations}
    return point_records_from_coco(points, json_file, image_root, dataset_name)


def pseudo_label_dataset_dicts(dataset_name, *, need_sizes=False):
    """Point dataset dicts of ``dataset_name`` for the pseudo-labeler (see the module docstring).

    Args:
        dataset_name (str): a registered points set or mask set.
        need_sizes (bool): every point annotation must carry its true ``bbox`` (oracle_size mode).

    Returns:
        list[dict] in ``load_point_json``'s format (``label_kind`` "points"), annotations with ``id``.
    """
    meta = MetadataCatalog.get(dataset_name)
    if meta.get("label_kind", None) == "points":
        dicts = DatasetCatalog.get(dataset_name)
        if need_sizes:
            dicts = _attach_gt_boxes(dicts, dataset_name)
        return dicts
    return _points_from_masks(dataset_name)


def build_pseudo_label_loader(cfg, dataset_name):
    """Test loader of ``dataset_name`` as point images (``WSSISDatasetMapper(cfg, False)``: the points
    become ``"point_instances"``, scaled like the image). Every image file is checked first (one
    ``os.path.isfile`` each): a missing one fails naming it; with ``DATALOADER.WSSIS_SKIP_BAD_IMAGES`` every
    image is decoded once here and the bad ones are left out of the export with a count."""
    need_sizes = cfg.MODEL.WSSIS.PSEUDO_LABEL_MODE == "oracle_size"
    dicts = pseudo_label_dataset_dicts(dataset_name, need_sizes=need_sizes)
    skip = cfg.DATALOADER.WSSIS_SKIP_BAD_IMAGES
    dicts = check_image_files(dicts, dataset_name, skip=skip, decode=skip)
    return build_detection_test_loader(
        dicts, mapper=WSSISDatasetMapper(cfg, False), num_workers=cfg.DATALOADER.NUM_WORKERS
    )


def default_export_path(cfg, dataset_name):
    """``MODEL.WSSIS.EXPORT_PATH`` ("{dataset}" replaced) or ``OUTPUT_DIR/pseudo_labels/<dataset>.json``."""
    path = cfg.MODEL.WSSIS.EXPORT_PATH
    if path:
        return path.replace("{dataset}", dataset_name)
    return os.path.join(cfg.OUTPUT_DIR, "pseudo_labels", f"{dataset_name}.json")
