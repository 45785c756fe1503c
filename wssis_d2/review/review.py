"""The review of a whole labels file: per click flags and risk, per image orphans, risk and rank.

Input is what the pipeline (or ``tools/predict.py --review``) has at hand, all COCO-style:

* ``labels``: a labels.json-like dict (``pseudo.labels.build_labels``): images, and one annotation per click
  with ``point_ann_id``, ``point`` (x, y), ``segmentation`` (RLE), ``score`` and ``"wssis_flag": "fallback"``
  for a click without a mask; annotations without ``point_ann_id`` (true masks) are not reviewed;
* ``coarse``: {point_ann_id: RLE} of the teacher's masks before MaskRefineNet (None: no refinement);
* ``plain``: {image_id: [detections]} of a click-free pass (``score``, ``segmentation``, ``category_id``,
  ``bbox``) (None: no orphans);
* ``stats``: ``signals.area_stats`` of the full labels; ``tiles``: ``tiles(h, w) -> (T, 4)`` or None.

Output (review.json's "clicks" and "images"): see :func:`review_dataset`.
"""
import logging
from collections import defaultdict
from typing import Callable, Dict, List, Mapping, Optional

import numpy as np

from ..data.coco_masks import rle_areas
from ..pseudo.labels import FALLBACK_FLAG
from .risk import FLAGS, ReviewSettings, click_risk, flag_names, flag_strengths, image_risk
from .signals import area_zscores, click_signals, find_orphans, plain_signals

__all__ = ["review_dataset", "is_click", "clicks_by_image", "detections_by_image", "orphans_of_image"]

logger = logging.getLogger(__name__)


def is_click(ann: Mapping) -> bool:
    """An annotation made from a click (it has a ``point_ann_id`` >= 0), not a true mask or an orphan."""
    return (ann.get("point_ann_id") if ann.get("point_ann_id") is not None else -1) >= 0


def clicks_by_image(labels: Mapping) -> Dict[int, List[dict]]:
    """{image_id: the click annotations of that image (those with ``point_ann_id``), in file order}, every
    image of ``labels`` present."""
    out = {img["id"]: [] for img in labels["images"]}
    for a in labels["annotations"]:
        if is_click(a):
            out[a["image_id"]].append(a)
    return out


def detections_by_image(plain: Optional[Mapping]) -> Dict[int, List[dict]]:
    """{image_id: detections} of a click-free pass's json (a dict with "annotations"), or {} for None."""
    out = defaultdict(list)
    for a in (plain or {}).get("annotations", []):
        out[a["image_id"]].append(a)
    return out


def orphans_of_image(dets: List[dict], clicks: List[dict], image_hw, settings: ReviewSettings) -> List[dict]:
    """The detections of one image that are orphans (``signals.find_orphans``) with the clicks ``clicks``."""
    if not dets:
        return []
    points = np.array([c["point"] for c in clicks], dtype=np.float64).reshape(-1, 2)
    keep = find_orphans([d["segmentation"] for d in dets], np.array([d["score"] for d in dets]), points,
                        [c["segmentation"] for c in clicks], image_hw, min_score=settings.orphan_score,
                        max_iou=settings.orphan_iou, click_iou=settings.click_iou,
                        has_mask=np.array([c.get("wssis_flag") != FALLBACK_FLAG for c in clicks], dtype=bool))
    return [dets[k] for k in np.flatnonzero(keep)]


def _image_clicks(clicks: List[dict], img: Mapping, coarse, stats, tiles, settings, dets: Optional[List[dict]]
                  ) -> List[dict]:
    """Review records of one image's clicks (``dets``: the click-free pass's detections, None: no pass)."""
    h, w = int(img["height"]), int(img["width"])
    n = len(clicks)
    fallback = np.array([c.get("wssis_flag") == FALLBACK_FLAG for c in clicks], dtype=bool)
    points = np.array([c["point"] for c in clicks], dtype=np.float64).reshape(n, 2)
    rles = [c["segmentation"] for c in clicks]
    coarse_rles = None if coarse is None else [coarse.get(c["point_ann_id"]) for c in clicks]
    sig = click_signals(rles, points, (h, w), has_mask=~fallback, coarse=coarse_rles,
                        tiles=tiles(h, w) if tiles is not None else None)
    areas = np.array([c.get("area", 0) for c in clicks], dtype=np.float64)
    z = np.where(fallback, 0.0, area_zscores(areas, [c["category_id"] for c in clicks], stats))
    scores = np.array([c.get("score", 0.0) for c in clicks], dtype=np.float64)
    plain = None
    if dets is not None:
        plain = plain_signals(rles, points, [d["segmentation"] for d in dets], np.array([d["score"] for d in dets]),
                              (h, w))
        plain[0][fallback] = True  # a fallback is only a fallback
    strengths = flag_strengths(sig, fallback=fallback, area_z=z, scores=scores, settings=settings, plain=plain)
    risks = click_risk(strengths, settings.weights, settings.bias)
    out = []
    for k, (c, names) in enumerate(zip(clicks, flag_names(strengths))):
        partner = int(sig["overlap_with"][k])
        out.append({
            "point_ann_id": int(c["point_ann_id"]), "image_id": int(c["image_id"]),
            "category_id": int(c["category_id"]), "point": [float(v) for v in c["point"]],
            "risk": round(float(risks[k]), 4), "flags": names,
            "strengths": {f: round(float(v), 3) for f, v in zip(FLAGS, strengths[k])},
            "signals": {"score": round(float(scores[k]), 4), "area": float(areas[k]), "area_z": round(float(z[k]), 3),
                        "overlap": round(float(sig["overlap"][k]), 3),
                        "overlap_with": int(clicks[partner]["point_ann_id"]) if partner >= 0 else None,
                        "other_clicks": int(sig["other_clicks"][k]), "contains_click": bool(sig["contains"][k]),
                        "mrn_iou": None if np.isnan(sig["mrn_iou"][k]) else round(float(sig["mrn_iou"][k]), 3),
                        "image_cut": round(float(sig["image_cut"][k]), 3),
                        "tile_cut": round(float(sig["tile_cut"][k]), 3),
                        "plain_iou": None if plain is None or np.isnan(plain[1][k]) else round(float(plain[1][k]), 3)}})
    return out


def review_dataset(labels: Mapping, *, coarse: Optional[Mapping[int, dict]] = None, plain: Optional[Mapping] = None,
                   stats: Mapping, tiles: Optional[Callable] = None, settings: ReviewSettings = ReviewSettings()
                   ) -> dict:
    """Review every clicked image of ``labels`` (module docstring).

    Returns:
        {"clicks": [{point_ann_id, image_id, category_id, point, risk, flags, strengths, signals}], sorted by
         risk (highest first);
         "images": [{image_id, file_name, rank (1 = review first), risk, expected_bad (sum of click risks),
         num_clicks, num_detections (confident click-free detections; None without a pass), num_flagged,
         orphans: [{category_id, bbox, area, score, segmentation}]}] in rank order}. Images without clicks and
        without orphans are left out.
    """
    by_image = clicks_by_image(labels)
    dets = detections_by_image(plain)
    images = {img["id"]: img for img in labels["images"]}
    clicks, records = [], []
    for image_id, anns in by_image.items():
        img = images[image_id]
        hw = (int(img["height"]), int(img["width"]))
        rows = _image_clicks(anns, img, coarse, stats, tiles, settings,
                             dets.get(image_id, []) if plain is not None else None) if anns else []
        orphans = orphans_of_image(dets.get(image_id, []), anns, hw, settings) if plain is not None else []
        if not rows and not orphans:
            continue
        risks = np.array([r["risk"] for r in rows])
        scores = np.array([o["score"] for o in orphans])
        records.append({
            "image_id": int(image_id), "file_name": img.get("file_name"),
            "risk": round(image_risk(risks, scores, settings.orphan_weight), 4),
            "expected_bad": round(float(risks.sum()), 3), "num_clicks": len(rows),
            "num_detections": (sum(d["score"] >= settings.orphan_score for d in dets.get(image_id, []))
                               if plain is not None else None),
            "num_flagged": sum(bool(r["flags"]) for r in rows),
            "orphans": [{"category_id": int(o["category_id"]), "bbox": [float(v) for v in o["bbox"]], "area": area,
                         "score": round(float(o["score"]), 4), "segmentation": o["segmentation"]}
                        for o, area in zip(orphans, rle_areas([o["segmentation"] for o in orphans]))]})
        clicks.extend(rows)
    clicks.sort(key=lambda r: (-r["risk"], r["point_ann_id"]))
    records.sort(key=lambda r: (-r["risk"], -r["expected_bad"], r["image_id"]))
    for rank, r in enumerate(records, start=1):
        r["rank"] = rank
    num_orphans = sum(len(r["orphans"]) for r in records)
    logger.info(f"Review: {len(clicks)} clicks on {len(records)} images, {sum(bool(c['flags']) for c in clicks)} "
                f"flagged, {num_orphans} orphans (confident click-free detections without a click)")
    return {"clicks": clicks, "images": records}
