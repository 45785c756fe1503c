"""How far two pseudo-label jsons of the same clicks differ (e.g. one run on 1 process and one on 2).

Annotations of a click are matched by (``image_id``, ``point_ann_id``); those without one (threshold
pseudo-labels, ``point_ann_id`` -1, whose ids follow their score order) greedily by mask IoU within their
image, highest first (IoU > 0). For the matched pairs it counts equal ids, classes,
points and levels and equal masks bit for bit, and gives the mask IoU (pycocotools, RLE) and the largest
score difference; unmatched annotations are counted on each side. Masks are compared as the exporter wrote
them (RLE), so "equal" means the same pixels.
"""
from collections import defaultdict
from typing import Dict, Mapping, Union

import numpy as np
import pycocotools.mask as mask_util

from ..data.coco_masks import to_rle
from ..data.validation import as_coco

__all__ = ["diff_pseudo_labels", "format_label_diff"]


def _click(ann):
    point_ann_id = ann.get("point_ann_id", -1)
    return point_ann_id is not None and point_ann_id >= 0


def _match_by_iou(anns_a, anns_b, size):
    """Greedy one-to-one pairs of two lists of one image's annotations, highest mask IoU first (IoU > 0)."""
    if not anns_a or not anns_b:
        return []
    iou = np.asarray(mask_util.iou([to_rle(x["segmentation"], *size) for x in anns_a],
                                   [to_rle(y["segmentation"], *size) for y in anns_b],
                                   [0] * len(anns_b))).reshape(len(anns_a), len(anns_b))
    order = np.argsort(-iou, axis=None, kind="stable")
    used_a, used_b, pairs = set(), set(), []
    for i, j in zip(*np.unravel_index(order, iou.shape)):
        if iou[i, j] <= 0:
            break
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            pairs.append((anns_a[i], anns_b[j]))
    return pairs


def _counts(rle):
    counts = rle["counts"]
    return counts.decode("ascii") if isinstance(counts, bytes) else counts


def diff_pseudo_labels(a: Union[str, Mapping], b: Union[str, Mapping]) -> Dict[str, object]:
    """Compare two pseudo-label jsons (paths or dicts of the exporter's schema).

    Returns:
        dict: ``annotations_a`` / ``annotations_b``, ``matched``, ``only_a`` / ``only_b`` (counts),
        ``equal_ids`` / ``equal_classes`` / ``equal_points`` / ``equal_levels`` / ``equal_masks`` (counts
        over the matched pairs), ``mask_iou_mean`` / ``mask_iou_min`` (None without pairs),
        ``max_score_diff``, and ``identical`` (every annotation matched and every field above equal).
    """
    a, b = as_coco(a, "pseudo"), as_coco(b, "pseudo")
    sizes = {img["id"]: (img["height"], img["width"]) for img in a["images"]}
    by_click_b = {(ann["image_id"], ann["point_ann_id"]): ann for ann in b["annotations"] if _click(ann)}
    pairs = defaultdict(list)  # image id -> [(ann a, ann b)]
    free_a, free_b = defaultdict(list), defaultdict(list)  # image id -> annotations without a click
    for ann in a["annotations"]:
        other = by_click_b.pop((ann["image_id"], ann["point_ann_id"]), None) if _click(ann) else None
        if other is not None:
            pairs[ann["image_id"]].append((ann, other))
        elif not _click(ann):
            free_a[ann["image_id"]].append(ann)
    for ann in b["annotations"]:
        if not _click(ann):
            free_b[ann["image_id"]].append(ann)
    for image_id in set(free_a) & set(free_b):
        pairs[image_id] += _match_by_iou(free_a[image_id], free_b[image_id], sizes[image_id])
    flat = [p for image_pairs in pairs.values() for p in image_pairs]
    ious = []
    equal_masks = 0
    for image_id, image_pairs in pairs.items():  # one IoU call per image
        if not image_pairs:
            continue
        h, w = sizes[image_id]
        rles_a = [to_rle(x["segmentation"], h, w) for x, _ in image_pairs]
        rles_b = [to_rle(y["segmentation"], h, w) for _, y in image_pairs]
        ious.append(np.diag(np.asarray(mask_util.iou(rles_a, rles_b, [0] * len(rles_b))).reshape(len(rles_a), -1)))
        # Compressed RLE is canonical: the same pixels give the same counts.
        equal_masks += sum(_counts(ra) == _counts(rb) and list(ra["size"]) == list(rb["size"])
                           for ra, rb in zip(rles_a, rles_b))
    ious = np.concatenate(ious) if ious else np.zeros(0)

    def count(field):
        return sum(x.get(field) == y.get(field) for x, y in flat)

    result = {
        "annotations_a": len(a["annotations"]), "annotations_b": len(b["annotations"]), "matched": len(flat),
        "only_a": len(a["annotations"]) - len(flat), "only_b": len(b["annotations"]) - len(flat),
        "equal_ids": count("id"), "equal_classes": count("category_id"), "equal_points": count("point"),
        "equal_levels": count("level"), "equal_masks": equal_masks,
        "mask_iou_mean": float(ious.mean()) if len(ious) else None,
        "mask_iou_min": float(ious.min()) if len(ious) else None,
        "max_score_diff": max((abs(float(x.get("score", 1)) - float(y.get("score", 1))) for x, y in flat),
                              default=0.0),
    }
    n = len(flat)
    result["identical"] = bool(result["only_a"] == result["only_b"] == 0 and all(
        result[k] == n for k in ("equal_ids", "equal_classes", "equal_points", "equal_levels", "equal_masks"))
        and result["max_score_diff"] == 0)
    return result


def format_label_diff(name: str, diff: Mapping[str, object]) -> str:
    """One line of :func:`diff_pseudo_labels`'s result."""
    iou = "-" if diff["mask_iou_mean"] is None else f"{diff['mask_iou_mean']:.4f} (min {diff['mask_iou_min']:.4f})"
    n = diff["matched"]
    return (f"{name}: {'IDENTICAL' if diff['identical'] else 'differ'}; {diff['annotations_a']} vs "
            f"{diff['annotations_b']} annotations, {n} matched ({diff['only_a']} / {diff['only_b']} unmatched); "
            f"equal ids {diff['equal_ids']}/{n}, classes {diff['equal_classes']}/{n}, points "
            f"{diff['equal_points']}/{n}, levels {diff['equal_levels']}/{n}, masks {diff['equal_masks']}/{n}; "
            f"mask IoU {iou}; largest score difference {diff['max_score_diff']:.3g}")
