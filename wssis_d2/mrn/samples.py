"""MaskRefineNet training samples: the teacher's coarse masks on fully-labeled images, paired with GT.

METHOD.md section 4: the teacher predicts, guided by the true points, on the FULL images (usually from
several intermediate checkpoints, so that coarse masks are imperfect); every prediction becomes one
sample whose target is the GT mask of the instance it was made for. N images x M checkpoints x their
instances give the samples.

Inputs are pseudo-label jsons (the exporter's format, see docs/MRN.md): COCO instances jsons whose
annotations carry ``segmentation`` (compressed RLE), ``category_id`` (ORIGINAL dataset id), ``point``
[x, y] (continuous pixel coordinates of the original image) and ``point_ann_id`` (id of the source
point annotation = id of the true annotation in the GT json; -1 when unknown).

Pairing rule (:func:`pair_mrn_samples`):

1. ``point_ann_id`` != -1: the GT annotation with that id (its image and category must agree, else
   ``ValueError``: the files do not belong together).
2. ``point_ann_id`` == -1: the non-crowd GT instance of the same image and class whose own point is
   nearest to the prediction's point (as in the paper); a GT instance's point is its mask's centre of
   mass snapped into the mask (:func:`wssis_d2.data.point_rules.centroid_point`, the rule of the
   published runs). No GT instance of that class in the image: the prediction is dropped (counted).

GT masks that cannot be used (polygons of fewer than 3 points, empty masks) are dropped first with a count
(:func:`wssis_d2.data.coco_masks.clean_segmentations`); a prediction made for a dropped GT instance is
counted "unmatched". Images without any GT or pseudo-label give no sample.

Class ids: every json uses original category ids; the contiguous index (which selects the heatmap
channel) is always :func:`wssis_d2.data.categories.contiguous_category_map` of the categories sorted by
id, the convention of detectron2's ``load_coco_json``, in training and in refinement alike.

A sample json (written by ``tools/build_mrn_dataset.py``) is a COCO instances json with one annotation
per sample: ``segmentation`` = the coarse mask, plus ``gt_segmentation`` (the target, as in the GT
json), ``point``, ``gt_ann_id``, ``match`` ("point_ann_id" or "nearest"), ``source`` (index into
``info["pseudo_jsons"]``), ``score``, ``level`` and ``iou`` (coarse vs target).
"""
import logging
import os
from collections import defaultdict
from typing import Dict, List, Sequence, Tuple, Union

import numpy as np
import pycocotools.mask as mask_util

from ..data.coco_masks import clean_segmentations, decode_segmentation, log_cleaned, to_rle
from ..data.json_io import load_json
from ..data.validation import load_coco
from ..data.point_rules import centroid_point

__all__ = [
    "to_rle",
    "pair_mrn_samples",
    "split_image_ids_holdout",
    "make_mrn_sample_jsons",
]

logger = logging.getLogger(__name__)

_PSEUDO_FIELDS = ("image_id", "category_id", "segmentation", "point")


def _load(obj, what):
    if isinstance(obj, (str, os.PathLike)):
        return load_json(obj), os.fspath(obj)
    return obj, f"<{what}>"


def _check_pseudo_annotation(ann, where):
    missing = [k for k in _PSEUDO_FIELDS if k not in ann]
    if missing:
        raise ValueError(f"{where}: pseudo-label annotation {ann.get('id')} lacks {missing}")
    if not isinstance(ann["segmentation"], dict):
        raise ValueError(f"{where}: pseudo-label annotation {ann.get('id')} must have an RLE segmentation")


def pair_mrn_samples(pseudo_jsons: Sequence[Union[str, dict]], gt_json: Union[str, dict]
                     ) -> Tuple[List[dict], dict]:
    """Pair every pseudo-label with its GT instance (rule in the module docstring).

    Args:
        pseudo_jsons: pseudo-label jsons (paths or loaded dicts), e.g. one per teacher checkpoint.
        gt_json: the GT json of the same (fully-labeled) images (path or loaded dict).

    Returns:
        samples: list of sample annotations (fields in the module docstring; ``id`` 1..n, in input
            order), ``category_id`` original ids.
        stats: counts ``{"num_pseudo", "num_samples", "by_point_ann_id", "by_nearest",
            "unmatched", "mean_iou"}`` (mean IoU of coarse vs target over the samples).

    Raises:
        ValueError: a pseudo-label's image is not in the GT json or has another size; ``point_ann_id``
            names an annotation of another image or class or an unknown one; the category sets differ.
    """
    gt, gt_where = _load(gt_json, "gt")
    gt_images = {img["id"]: img for img in gt["images"]}
    gt_annotations, dropped = clean_segmentations(gt["annotations"])  # degenerate polygons, empty masks
    log_cleaned(dropped, gt_where)
    gt_anns = {a["id"]: a for a in gt_annotations}
    empty_gt = {a["id"] for a in gt["annotations"]} - set(gt_anns)  # no usable mask: no target
    gt_by_image_class = defaultdict(list)
    for a in gt_annotations:
        if not a.get("iscrowd", 0):
            gt_by_image_class[(a["image_id"], a["category_id"])].append(a)
    gt_cats = sorted(int(c["id"]) for c in gt["categories"])
    gt_points = {}  # GT annotation id -> (x, y) centroid point, computed on demand

    def gt_point(a):
        if a["id"] not in gt_points:
            img = gt_images[a["image_id"]]
            mask = decode_segmentation(a["segmentation"], img["height"], img["width"])
            gt_points[a["id"]] = centroid_point(mask) if mask.any() else None
        return gt_points[a["id"]]

    samples, iou_sum = [], 0.0
    stats = {"num_pseudo": 0, "num_samples": 0, "by_point_ann_id": 0, "by_nearest": 0, "unmatched": 0}
    for source, pj in enumerate(pseudo_jsons):
        pseudo, where = _load(pj, f"pseudo {source}")
        cats = sorted(int(c["id"]) for c in pseudo["categories"])
        if cats != gt_cats:
            raise ValueError(f"{where}: categories {cats} differ from those of {gt_where} ({gt_cats}); "
                             "the class-wise heatmap needs one category list")
        images = {img["id"]: img for img in pseudo["images"]}
        for ann in pseudo["annotations"]:
            stats["num_pseudo"] += 1
            _check_pseudo_annotation(ann, where)
            image_id = ann["image_id"]
            img = gt_images.get(image_id)
            if img is None:
                raise ValueError(f"{where}: image {image_id} is not in the GT json {gt_where}")
            pimg = images.get(image_id, img)
            if (pimg["height"], pimg["width"]) != (img["height"], img["width"]):
                raise ValueError(f"{where}: image {image_id} is {pimg['height']}x{pimg['width']} there "
                                 f"but {img['height']}x{img['width']} in {gt_where}")
            src_id = int(ann.get("point_ann_id", -1))
            if src_id != -1:
                target = gt_anns.get(src_id)
                if target is None and src_id in empty_gt:
                    stats["unmatched"] += 1
                    continue
                if target is None:
                    raise ValueError(f"{where}: annotation {ann.get('id')} (image {image_id}) has "
                                     f"point_ann_id {src_id}, which is not in {gt_where}")
                if target["image_id"] != image_id or target["category_id"] != ann["category_id"]:
                    raise ValueError(
                        f"{where}: annotation {ann.get('id')} (image {image_id}, category "
                        f"{ann['category_id']}) has point_ann_id {src_id}, which belongs to image "
                        f"{target['image_id']}, category {target['category_id']} in {gt_where}")
                match = "point_ann_id"
            else:
                px, py = (float(v) for v in ann["point"])
                best, best_d = None, None
                for cand in gt_by_image_class.get((image_id, ann["category_id"]), ()):
                    p = gt_point(cand)
                    if p is None:
                        continue
                    d = (p[0] - px) ** 2 + (p[1] - py) ** 2
                    if best_d is None or d < best_d:
                        best, best_d = cand, d
                if best is None:
                    stats["unmatched"] += 1
                    continue
                target, match = best, "nearest"
            stats["by_" + match] += 1
            h, w = img["height"], img["width"]
            iou = float(mask_util.iou([to_rle(ann["segmentation"], h, w)],
                                      [to_rle(target["segmentation"], h, w)], [0])[0, 0])
            iou_sum += iou
            samples.append({
                "id": len(samples) + 1,
                "image_id": image_id,
                "category_id": ann["category_id"],
                "segmentation": ann["segmentation"],
                "gt_segmentation": target["segmentation"],
                "point": [float(v) for v in ann["point"]],
                "bbox": ann.get("bbox"),
                "area": ann.get("area"),
                "iscrowd": 0,
                "gt_ann_id": target["id"],
                "match": match,
                "source": source,
                "score": ann.get("score"),
                "level": ann.get("level"),
                "iou": round(iou, 5),
            })
    stats["num_samples"] = len(samples)
    stats["mean_iou"] = iou_sum / len(samples) if samples else None
    return samples, stats


def split_image_ids_holdout(image_ids: Sequence[int], val_fraction: float, seed: int
                            ) -> Tuple[List[int], List[int]]:
    """Seeded split of images (not samples: every checkpoint's sample of an image stays on one side).

    The sorted ids are permuted with ``np.random.default_rng(seed)``; the first
    ``round(val_fraction * N)`` are held out. Returns (train ids, val ids), each sorted.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    ids = np.array(sorted(set(int(i) for i in image_ids)), dtype=np.int64)
    perm = np.random.default_rng(seed).permutation(len(ids))
    n_val = int(np.floor(val_fraction * len(ids) + 0.5))
    val = sorted(ids[perm[:n_val]].tolist())
    train = sorted(ids[perm[n_val:]].tolist())
    return train, val


def make_mrn_sample_jsons(pseudo_jsons: Sequence[str], gt_json: str, *, image_root: str = None,
                          val_fraction: float = 0.0, seed: int = 1) -> Dict[str, dict]:
    """Pair the pseudo-labels with GT and split by image into MRN sample jsons.

    Args:
        pseudo_jsons: paths of pseudo-label jsons made on the fully-labeled images.
        gt_json: path of the GT json of those images.
        image_root: directory the images' ``file_name`` are relative to; default: the first pseudo
            json's ``info["image_root"]``, else the GT json's.
        val_fraction: fraction of the images held out for evaluation.
        seed: holdout seed.

    Returns:
        {"train": sample json, "val": sample json} ("val" has no image when val_fraction is 0).
    """
    pseudo = [load_coco(p, "pseudo") for p in pseudo_jsons]
    gt = load_coco(gt_json)
    samples, stats = pair_mrn_samples(pseudo, gt)
    if image_root is None:
        for d in pseudo + [gt]:
            image_root = (d.get("info") or {}).get("image_root")
            if image_root:
                break
    if not image_root:
        raise ValueError("No image root: pass image_root (the pseudo jsons' info has no 'image_root')")
    used = sorted({s["image_id"] for s in samples})
    train_ids, val_ids = split_image_ids_holdout(used, val_fraction, seed)
    if val_ids and not train_ids:  # e.g. one image and val_fraction >= 0.5: training comes first
        logger.warning(f"MRN samples: holding out {len(val_ids)} of {len(used)} images would leave none to train "
                       "on: none held out")
        train_ids, val_ids = val_ids, []
    images = {img["id"]: img for img in gt["images"]}
    out = {}
    for split, ids in (("train", train_ids), ("val", val_ids)):
        keep = set(ids)
        anns = [s for s in samples if s["image_id"] in keep]
        ious = [s["iou"] for s in anns]
        out[split] = {
            "info": {
                "tool": "wssis_d2.mrn.samples.make_mrn_sample_jsons",
                "kind": "mrn_samples",
                "split": split,
                "pseudo_jsons": [os.path.abspath(p) for p in pseudo_jsons],
                "gt_json": os.path.abspath(gt_json),
                "image_root": os.path.abspath(image_root),
                "val_fraction": val_fraction,
                "seed": seed,
                "pairing": stats,
                "num_images": len(ids),
                "num_samples": len(anns),
                "mean_coarse_iou": float(np.mean(ious)) if ious else None,
            },
            "images": [images[i] for i in ids],
            "categories": gt["categories"],
            "annotations": anns,
        }
    logger.info(f"MRN samples: {stats['num_samples']} of {stats['num_pseudo']} pseudo-labels paired "
                f"({stats['by_point_ann_id']} by point_ann_id, {stats['by_nearest']} by nearest point, "
                f"{stats['unmatched']} unmatched); {len(train_ids)} train / {len(val_ids)} val images; "
                f"mean coarse IoU {stats['mean_iou'] or 0.0:.3f}")
    return out
