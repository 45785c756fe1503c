"""The best fixed level per click: for each click, the best of the masks the fixed-level exports gave it.

``oracle_size`` (``modeling.level_choice.oracle_size_levels``) picks the level from the true size, which
is a plausible level, not the best one. ``oracle_best_labels`` looks at the mask every level gives each
click (the fixed-level exports: one pseudo-label json per level, same teacher, same clicks) and keeps,
per click, the one with the highest IoU with the click's true mask (``quality.point_ious``; ties to the
finer level). It uses the true masks, so no user can have it; it shows how far a better level choice
could go on the fixed-level masks.

It is **not** an upper bound of level choice. When two clicks fall in one grid cell of a level, that
level's export splits the cell's mask between them (same-cell collisions), while the adaptive rule moves the
farther click to a free level: a 2-click probe gave adaptive mean IoU 1.0 and ``oracle_best`` 0.889. Nor
does a per-click IoU choice bound AP, which also depends on the other clicks' masks.

The output is a pseudo-label json of the exporter's schema (docs/PSEUDO_LABELS.md) with ``info.mode``
"oracle_best" and, per level, how many clicks took it.
"""
from typing import Mapping, Sequence, Union

import numpy as np

from ..data.validation import as_coco
from .quality import clicked_gt, point_ious

__all__ = ["oracle_best_labels"]


def oracle_best_labels(level_files: Sequence[Union[str, Mapping]], gt: Union[str, Mapping]) -> dict:
    """Per click, the pseudo-label of the level whose mask best matches the click's true mask.

    Args:
        level_files: pseudo-label jsons (paths or dicts) of the fixed-level exports, finest level first
            (ties go to the earlier file).
        gt: the points_gt json (true masks of the clicked images, ids aligned with ``point_ann_id``).

    Returns:
        the pseudo-label json (dict): the first file's images and categories, one annotation per click
        that got a mask on some level (ids 1..N, in the GT points' order), ``info`` with the counts.
    """
    if not level_files:
        raise ValueError("oracle_best_labels needs the pseudo-labels of at least one level")
    levels = [as_coco(f, "pseudo") for f in level_files]
    coco_gt, points = clicked_gt(gt)
    ious = np.full((len(levels), len(points)), -1.0)  # -1: no mask on that level
    by_point = []
    for k, pseudo in enumerate(levels):
        anns = [a for a in pseudo["annotations"] if a.get("point_ann_id", -1) >= 0]
        iou, covered = point_ious(anns, points, coco_gt)
        ious[k] = np.where(covered, iou, -1.0)
        by_point.append({a["point_ann_id"]: a for a in anns})
    best = ious.argmax(axis=0)  # first maximum: the finer level on ties
    annotations = []
    for j, g in enumerate(points):
        if ious[best[j], j] < 0:
            continue
        annotations.append(dict(by_point[best[j]][g["id"]], id=len(annotations) + 1))
    first = levels[0]
    source_info = [(p.get("info") or {}) for p in levels]
    info = {
        "tool": "wssis_d2.evaluation.oracle_best.oracle_best_labels",
        "mode": "oracle_best",
        "sources": [i.get("mode", "?") + (f" level {i['settings']['fixed_level']}" if i.get("mode") == "fixed"
                                         else "") for i in source_info],
        "num_points": len(points),
        "num_points_without_mask": len(points) - len(annotations),
        "clicks_per_source": [int(((best == k) & (ious.max(axis=0) >= 0)).sum()) for k in range(len(levels))],
        "num_annotations": len(annotations),
    }
    return {"info": info, "images": first["images"], "categories": first["categories"],
            "annotations": annotations}
