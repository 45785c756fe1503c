"""Align a COCO json of true masks to a point-label json (the clicks), for pseudo-label quality.

The quality report (``wssis_d2.evaluation.quality``) matches a pseudo-label to its true mask by
``point_ann_id`` == GT annotation ``id``. A user's masks of clicked images come with their own ids, so
``align_gt_to_clicks`` rewrites them: images matched by ``file_name`` (GT images that were not clicked
are left out), image ids taken from the point file, and each GT annotation whose mask holds a click's
pixel (``mask[int(y), int(x)]``; the one with the smallest area when several do) takes that click's id.
GT annotations without a click keep a fresh id above every click id (they still count as objects to
find); clicks on no GT mask are counted in ``info``.
"""
import logging
from collections import defaultdict

import numpy as np
import pycocotools.mask as mask_util

from .coco_masks import decode_segmentation, encode_masks

__all__ = ["align_gt_to_clicks"]

logger = logging.getLogger(__name__)


def align_gt_to_clicks(gt: dict, points: dict, gt_name: str = "gt") -> dict:
    """The GT json with ids aligned to the clicks of ``points`` (module docstring)."""
    by_file = {img["file_name"]: img for img in points["images"]}
    gt_images = [img for img in gt["images"] if img["file_name"] in by_file]
    if not gt_images:
        raise ValueError(f"{gt_name}: none of its images is among the clicked images (matched by file_name)")
    new_id = {img["id"]: by_file[img["file_name"]]["id"] for img in gt_images}
    anns_by_image, clicks_by_image = defaultdict(list), defaultdict(list)
    for a in gt["annotations"]:
        if a["image_id"] in new_id:
            anns_by_image[new_id[a["image_id"]]].append(a)
    for c in points["annotations"]:
        clicks_by_image[c["image_id"]].append(c)
    next_id = max([c["id"] for c in points["annotations"]], default=0) + 1
    out, unmatched_clicks, matched = [], 0, 0
    images = []
    for img in gt_images:
        image_id = by_file[img["file_name"]]["id"]
        h, w = by_file[img["file_name"]]["height"], by_file[img["file_name"]]["width"]
        images.append(dict(img, id=image_id))
        anns, clicks = anns_by_image[image_id], clicks_by_image[image_id]
        assigned = {}
        if anns and clicks:
            masks = np.stack([decode_segmentation(a["segmentation"], h, w) for a in anns])  # (K, H, W)
            xy = np.array([c["point_coords"][0] for c in clicks], dtype=np.float64)
            cols = np.clip(xy[:, 0].astype(int), 0, w - 1)
            rows = np.clip(xy[:, 1].astype(int), 0, h - 1)
            hit = masks[:, rows, cols].T  # (clicks, K)
            area = masks.reshape(len(anns), -1).sum(1).astype(np.float64)
            cost = np.where(hit, area[None, :], np.inf)
            for ci in np.argsort(cost.min(1)):
                k = int(np.argmin(cost[ci]))
                if not np.isfinite(cost[ci, k]) or k in assigned:
                    unmatched_clicks += 1
                    continue
                assigned[k] = clicks[ci]["id"]
        else:
            unmatched_clicks += len(clicks)
        matched += len(assigned)
        for k, a in enumerate(anns):
            aid = assigned.get(k)
            if aid is None:
                aid, next_id = next_id, next_id + 1
            b = dict(a, id=aid, image_id=image_id)
            if "area" not in b:
                b["area"] = float(mask_util.area(encode_masks(decode_segmentation(a["segmentation"], h, w)[None])[0]))
            out.append(b)
    info = {"tool": "wssis_d2.data.click_gt.align_gt_to_clicks", "source": gt_name,
            "num_images": len(images), "num_gt_annotations": len(out), "num_matched": matched,
            "num_clicks_without_gt": unmatched_clicks,
            "num_gt_without_click": len(out) - matched}
    logger.info(f"{gt_name}: {len(images)} clicked images with true masks; {matched} of {len(out)} masks "
                f"matched to a click, {unmatched_clicks} clicks on no mask")
    return {"info": info, "images": images, "categories": gt.get("categories") or points["categories"],
            "annotations": out}
