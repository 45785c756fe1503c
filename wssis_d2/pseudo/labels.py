"""``labels.json``: masks for every image of a custom dataset, exactly one annotation per click.

``build_labels(full, points, pseudo)`` joins three files:

* the fully-labeled COCO json: its images and annotations (true masks) as they are;
* the point-label json (the clicks): its images, **every one kept** (with or without clicks);
* the pseudo-label json of those clicks (``PseudoLabelExporter``, optionally refined by MaskRefineNet):
  matched to the clicks by ``point_ann_id`` == the click's annotation ``id``.

Each click gives exactly one annotation: its pseudo-label (``segmentation`` RLE, ``bbox``, ``area``,
``score``, ``point``, ``level``, ``refined`` when refined, ``point_ann_id``) and the click's category, or,
when the click has no pseudo-label (absent from the pseudo json, or an empty mask), a **fallback**:
a disk of ``fallback_radius`` pixels around the click, clipped to the image, with ``score`` 0,
``level`` -1 and ``"wssis_flag": "fallback"``, so that a reviewer sees and corrects it. Annotation ids are
1..N (full first, then clicks in file order); images keep their ids (full and point ids must be
disjoint, as must file names). ``info`` records the sources and the counts.

``training_labels(labels)`` is labels.json without the flagged annotations (what the student trains on).
"""
import logging
from collections import Counter
from typing import Dict, Tuple

import numpy as np
import pycocotools.mask as mask_util

from ..data.coco_masks import encode_masks

__all__ = ["FALLBACK_FLAG", "build_labels", "check_disjoint", "fallback_disk", "training_labels"]

logger = logging.getLogger(__name__)

FALLBACK_FLAG = "fallback"
TOOL = "wssis_d2.pseudo.labels.build_labels"


def fallback_disk(x: float, y: float, radius: float, height: int, width: int) -> np.ndarray:
    """(H, W) bool disk of pixels whose centre (j + 0.5, i + 0.5) lies within ``radius`` of the continuous
    point (x, y), clipped to the image; the click's own pixel is always in it."""
    ys = np.arange(height)[:, None] + 0.5
    xs = np.arange(width)[None, :] + 0.5
    disk = (xs - x) ** 2 + (ys - y) ** 2 <= radius ** 2
    disk[min(max(int(y), 0), height - 1), min(max(int(x), 0), width - 1)] = True
    return disk


def check_disjoint(full: dict, points: dict, names: Tuple[str, str] = ("full", "points")):
    """ValueError when the fully-labeled and the point-label file share image ids or file names."""
    ids = {img["id"] for img in full["images"]} & {img["id"] for img in points["images"]}
    if ids:
        raise ValueError(f"{names[0]} and {names[1]} share image ids {sorted(ids)[:5]} ({len(ids)} in all); "
                         "a clicked image must not be in the fully-labeled file (re-import the clicks with "
                         f"--categories {names[0]} to get fresh ids)")
    files = {img["file_name"] for img in full["images"]} & {img["file_name"] for img in points["images"]}
    if files:
        raise ValueError(f"{names[0]} and {names[1]} both hold images {sorted(files)[:5]} ({len(files)} in all)")


def build_labels(full: dict, points: dict, pseudo: dict, *, fallback_radius: float = 6.0,
                 names: Tuple[str, str, str] = ("full", "points", "pseudo"), image_root: str = None) -> dict:
    """labels.json as a dict (module docstring). ``names`` name the three inputs in messages / info."""
    check_disjoint(full, points, names[:2])
    clicks = {a["id"]: a for a in points["annotations"]}
    if len(clicks) != len(points["annotations"]):
        raise ValueError(f"{names[1]}: annotation ids are not unique")
    images = {img["id"]: img for img in points["images"]}
    best: Dict[int, dict] = {}
    extra = 0
    for a in pseudo["annotations"]:
        pid = a.get("point_ann_id", -1)
        if pid not in clicks:
            raise ValueError(f"{names[2]}: pseudo-label {a.get('id')} (image id {a.get('image_id')}) has "
                             f"point_ann_id {pid}, which is no click of {names[1]}")
        if pid in best:
            extra += 1
            if a.get("score", 0) <= best[pid].get("score", 0):
                continue
        best[pid] = a
    if extra:
        logger.info(f"{names[2]}: {extra} clicks had more than one pseudo-label; the highest score is kept")
    annotations = [dict(a, id=k + 1) for k, a in enumerate(full["annotations"])]
    counts = Counter()
    for click in points["annotations"]:
        img = images[click["image_id"]]
        x, y = click["point_coords"][0]
        p = best.get(click["id"])
        ann = {"image_id": click["image_id"], "category_id": click["category_id"], "iscrowd": 0,
               "point": [float(x), float(y)], "point_ann_id": click["id"]}
        if p is not None and p.get("area", 0) > 0:
            ann.update({k: p[k] for k in ("segmentation", "bbox", "area", "score", "level", "refined") if k in p})
            counts["pseudo"] += 1
        else:
            counts["fallback_absent" if p is None else "fallback_empty"] += 1
            rle = encode_masks(fallback_disk(x, y, fallback_radius, img["height"], img["width"])[None])[0]
            ann.update(segmentation=rle, bbox=[float(v) for v in mask_util.toBbox(rle)],
                       area=int(mask_util.area(rle)), score=0.0, level=-1, wssis_flag=FALLBACK_FLAG)
        annotations.append(dict(ann, id=len(annotations) + 1))
    num_fallback = counts["fallback_absent"] + counts["fallback_empty"]
    info = {"tool": TOOL, "full": names[0], "points": names[1], "pseudo": names[2], "image_root": image_root,
            "num_images": len(full["images"]) + len(points["images"]),
            "num_full_images": len(full["images"]), "num_point_images": len(points["images"]),
            "num_full_annotations": len(full["annotations"]), "num_clicks": len(clicks),
            "num_pseudo_labels": counts["pseudo"], "num_fallback": num_fallback,
            "num_fallback_no_pseudo_label": counts["fallback_absent"],
            "num_fallback_empty_mask": counts["fallback_empty"], "fallback_radius": float(fallback_radius),
            "fallback": f"disk of radius {fallback_radius:g} px around the click, \"wssis_flag\": "
                        f"\"{FALLBACK_FLAG}\", score 0"}
    if num_fallback:
        logger.warning(f"{num_fallback} of {len(clicks)} clicks have no pseudo-label ({counts['fallback_absent']} "
                       f"absent, {counts['fallback_empty']} empty): fallback disks of radius {fallback_radius:g} "
                       f"px, flagged \"{FALLBACK_FLAG}\"")
    return {"info": info, "images": list(full["images"]) + list(points["images"]),
            "categories": full.get("categories") or points.get("categories"), "annotations": annotations}


def training_labels(labels: dict) -> Tuple[dict, int]:
    """(labels without flagged annotations, number removed)."""
    kept = [a for a in labels["annotations"] if not a.get("wssis_flag")]
    removed = len(labels["annotations"]) - len(kept)
    info = dict(labels.get("info") or {}, num_flagged_excluded=removed)
    return dict(labels, info=info, annotations=kept), removed
