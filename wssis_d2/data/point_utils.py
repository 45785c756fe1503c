"""Point annotations -> ``Instances``, transformed like the image.

Coordinates: points are (x, y) in detectron2's continuous pixel coordinates (pixel (row i, col j) has
centre (j + 0.5, i + 0.5); the image spans [0, W] x [0, H]). ``Transform.apply_coords`` maps exactly
this convention (resize scales by new/old size, horizontal flip maps x -> W - x), so no +-0.5 shift
is needed anywhere here.
"""
import numpy as np
import torch
from detectron2.structures import BoxMode, Instances

__all__ = ["annotation_point", "is_point_annotation", "is_point_labeled", "point_annotations_to_instances"]


def is_point_annotation(anno):
    """An annotation is a point label when it has ``point_coords`` and no ``segmentation``."""
    return "point_coords" in anno and "segmentation" not in anno


def annotation_point(ann):
    """The click of a COCO-style annotation, (x, y) continuous pixel coordinates, or None: ``point``
    (pseudo-labels, predictions) or the first positive ``point_coords`` (point labels)."""
    if ann.get("point") is not None:
        return ann["point"]
    coords = ann.get("point_coords") or []
    labels = ann.get("point_labels") or [1] * len(coords)
    for xy, label in zip(coords, labels):
        if label == 1:
            return xy
    return None


def is_point_labeled(dataset_dict):
    """Whether an image is point-labeled: its loader tagged it (``label_kind == "points"``) or its
    annotations are point labels. An image mixing point and mask annotations raises ValueError."""
    annos = [a for a in dataset_dict.get("annotations", []) if not a.get("iscrowd", 0)]
    kinds = {is_point_annotation(a) for a in annos}
    if len(kinds) > 1:
        raise ValueError(f"Image {dataset_dict.get('image_id')} ({dataset_dict.get('file_name')}) mixes "
                         "point-only and mask annotations; an image is either fully or point labeled")
    return dataset_dict.get("label_kind") == "points" or kinds == {True}


def _first_positive_point(anno):
    labels = anno.get("point_labels", [1] * len(anno["point_coords"]))
    for point, label in zip(anno["point_coords"], labels):
        if int(label) == 1:
            return point
    raise ValueError(f"Annotation {anno.get('id')} has no positive point (point_labels {labels})")


def point_annotations_to_instances(annos, transforms, image_shape):
    """Build the point ``Instances`` of one image.

    Each non-crowd annotation contributes its first positive point (label 1): PointWSSIS uses one
    point per instance.

    Args:
        annos (list[dict]): annotations with ``point_coords`` ([[x, y], ...], continuous pixel
            coordinates of the original image), ``point_labels`` and contiguous ``category_id``;
            optionally ``id`` (source annotation id) and ``bbox`` + ``bbox_mode`` (the true box of
            the instance, e.g. joined from the points_gt file, needed by the oracle pseudo-labeler).
        transforms (TransformList): the transforms applied to the image.
        image_shape (tuple): (H, W) of the transformed image.

    Returns:
        Instances of size (H, W) with
            gt_points (N, 2) float32: (x, y) in the transformed image's continuous pixel coordinates;
            gt_classes (N,) int64: contiguous class ids;
            gt_point_valid (N,) bool: False where the point is outside [0, W] x [0, H] after the
                transforms (flagged, not dropped);
            gt_point_ids (N,) int64: the annotation ``id`` each point came from, -1 where absent;
            gt_sizes (N,) float32, only when every annotation has a ``bbox``: sqrt(w * h) of the
                transformed box, in transformed-image pixels.
    """
    annos = [a for a in annos if not a.get("iscrowd", 0)]
    points = np.array([_first_positive_point(a) for a in annos], dtype=np.float64).reshape(-1, 2)
    if len(points):
        points = transforms.apply_coords(points.copy())
    h, w = image_shape
    # The image spans [0, W] x [0, H] (as the point files' validation says): a click on the right or bottom
    # edge is valid and falls into the last grid cell (grid.points_to_cells clamps it).
    valid = (points[:, 0] >= 0) & (points[:, 0] <= w) & (points[:, 1] >= 0) & (points[:, 1] <= h)
    instances = Instances(tuple(image_shape))
    instances.gt_points = torch.as_tensor(points, dtype=torch.float32).reshape(-1, 2)
    instances.gt_classes = torch.as_tensor([int(a["category_id"]) for a in annos], dtype=torch.int64)
    instances.gt_point_valid = torch.as_tensor(valid, dtype=torch.bool)
    ids = [-1 if a.get("id") is None else int(a["id"]) for a in annos]
    instances.gt_point_ids = torch.as_tensor(ids, dtype=torch.int64)
    if annos and all("bbox" in a for a in annos):
        boxes = np.array([BoxMode.convert(a["bbox"], a.get("bbox_mode", BoxMode.XYWH_ABS), BoxMode.XYXY_ABS)
                          for a in annos], dtype=np.float64).reshape(-1, 4)
        boxes = transforms.apply_box(boxes)
        wh = (boxes[:, 2:] - boxes[:, :2]).clip(min=0)
        instances.gt_sizes = torch.as_tensor(np.sqrt(wh[:, 0] * wh[:, 1]), dtype=torch.float32)
    return instances
