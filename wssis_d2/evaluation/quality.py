"""Quality of pseudo-labels against the true masks of the point images (METHOD.md section 6).

This is *not* the teacher/student AP (ordinary inference on the validation set): it scores the
pseudo-labels of the point images, with every score set to 1.0, against the points_gt file (and once
more with their own scores: ``AP_scored``).

Report keys (``pseudo_label_quality``):

* ``AP``, ``AP50``, ``AP75``, ``APs``, ``APm``, ``APl``: ``COCOeval`` (segm, standard parameters except
  the detections per image: at least 100 and at least the most pseudo-labels or GT instances of any
  one image, so that no pseudo-label is cut; detectron2's compiled COCOeval when built) on the images of the points_gt
  file, in percent as detectron2 prints them; every pseudo-label scores 1.0 (ties keep file order).
  Crowd GT regions (``iscrowd`` 1) are handled by COCOeval as usual: detections on them are ignored,
  not false positives. None where COCOeval has no GT of that size.
* ``AP_scored``: ``AP`` with each pseudo-label's own ``score`` (the ranking a threshold method relies
  on; METHOD.md's quality AP sets every score to 1).
* ``mean_iou``: mean over the points of the IoU between the point's pseudo mask and its true mask,
  matched by ``point_ann_id`` == GT annotation id. A point with no pseudo mask counts IoU 0. A
  threshold-mode file (SSIS baseline: no pseudo-label belongs to a point) gets, per point, the IoU of the
  pseudo-label that overlaps its true mask most (0 with none): generous to the baseline.
* ``mean_iou_rule``: "click" (the point's own pseudo-label) or "best_overlap" (threshold mode).
* ``coverage``: fraction of the points that got a pseudo mask.
* ``levels``: {level: number of pseudo-labels} over the pseudo-labels of those images.
* ``microscopy``: the microscopy metrics of the pseudo-labels against all true masks of those images
  (``microscopy_evaluator.annotation_microscopy``: accuracy@0.5, f1@0.5, dsb, seg, count_error, ...; every
  pseudo-label counts, painted by score into label images).

The points are the non-crowd GT annotations, minus those the split tool could not click (listed in the
GT file's ``info["no_point_annotation_ids"]``: empty masks). ``coverage`` is None for a threshold-mode file.
"""
import contextlib
import io
from collections import Counter
from typing import Dict, Mapping, Optional, Tuple, Union

import numpy as np
import pycocotools.mask as mask_util
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..data.validation import as_coco
from .coco import has_fast_coco_eval
from .ids import one_based_annotation_ids, usable_gt_masks
from .microscopy import format_value
from .microscopy_evaluator import annotation_microscopy

__all__ = ["REPORT_KEYS", "pseudo_label_quality", "clicked_gt", "point_ious", "best_overlap_ious", "best_report",
           "format_report", "compare_reports"]

REPORT_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AP_scored", "mean_iou", "mean_iou_rule", "coverage",
               "levels", "microscopy")
_AREA_RANGES = {"APs": (0, 32**2), "APm": (32**2, 96**2), "APl": (96**2, 1e10)}  # COCOeval's


def _coco(dataset) -> COCO:
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return one_based_annotation_ids(usable_gt_masks(coco))  # a GT id 0 would lose its match in COCOeval


def _coco_ap(coco_gt: COCO, dets, image_ids) -> Dict[str, Optional[float]]:
    """AP metrics in percent (None where COCOeval reports -1, i.e. no GT of that kind)."""
    if not dets:
        # COCOeval needs at least one detection; with none, AP is 0 wherever there is GT to find.
        areas = [a.get("area", 0) for a in coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=image_ids, iscrowd=False))]
        out = {k: (0.0 if areas else None) for k in ("AP", "AP50", "AP75")}
        for key, (lo, hi) in _AREA_RANGES.items():
            out[key] = 0.0 if any(lo <= a <= hi for a in areas) else None
        return out
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(dets)
        if has_fast_coco_eval():  # detectron2's compiled COCOeval: same numbers, much faster on COCO
            from detectron2.evaluation.fast_eval_api import COCOeval_opt as evaluator
        else:
            evaluator = COCOeval
        ev = evaluator(coco_gt, coco_dt, "segm")
        ev.params.imgIds = list(image_ids)
        # COCOeval keeps 100 detections per image by default: an image with more points would lose
        # pseudo-labels. The largest setting must cover the most pseudo-labels (and GT) of any image.
        most = max(Counter(d["image_id"] for d in dets).most_common(1)[0][1],
                   max((len(coco_gt.getAnnIds(imgIds=[i])) for i in image_ids), default=0))
        ev.params.maxDets = list(ev.params.maxDets[:-1]) + [max(most, ev.params.maxDets[-1])]
        ev.evaluate()
        ev.accumulate()
    return _ap_at_max_dets(ev)


def _ap_at_max_dets(ev) -> Dict[str, Optional[float]]:
    """AP, AP50, AP75, APs/m/l in percent from an accumulated COCOeval at its largest maxDets.

    The same averages as ``COCOeval.summarize`` (which hard-codes 100 detections for AP); None where
    there is no GT of that kind (COCOeval's -1).
    """
    precision = ev.eval["precision"]  # (T iou thresholds, R recalls, K classes, A area ranges, M maxDets)
    iou_thrs = np.asarray(ev.params.iouThrs)

    def mean(p):
        p = p[p > -1]
        return float(p.mean()) * 100 if p.size else None

    all_t = slice(None)
    t50, t75 = (np.where(np.isclose(iou_thrs, t))[0] for t in (0.5, 0.75))
    cells = {"AP": (all_t, 0), "AP50": (t50, 0), "AP75": (t75, 0), "APs": (all_t, 1), "APm": (all_t, 2),
             "APl": (all_t, 3)}
    return {k: mean(precision[t, :, :, a, -1]) for k, (t, a) in cells.items()}


def pseudo_label_quality(pseudo: Union[str, Mapping], gt: Union[str, Mapping]) -> Dict[str, object]:
    """Score a pseudo-label json against the points_gt json (definitions in the module docstring).

    Args:
        pseudo: path or dict of a ``PseudoLabelExporter`` json.
        gt: path or dict of the points_gt json (true masks of the point images).

    Returns:
        dict with exactly the keys ``REPORT_KEYS``.
    """
    pseudo = as_coco(pseudo, "pseudo")
    coco_gt, points = clicked_gt(gt)
    image_ids = sorted(coco_gt.getImgIds())
    id_set = set(image_ids)
    anns = [a for a in pseudo["annotations"] if a["image_id"] in id_set]
    dets = []
    for a in anns:
        # Without "bbox", loadRes takes the area from the mask (its bbox branch would use the box area).
        dets.append({k: v for k, v in a.items() if k not in ("id", "bbox", "area")})
    report = _coco_ap(coco_gt, [dict(d, score=1.0) for d in dets], image_ids)
    report["AP_scored"] = _coco_ap(coco_gt, [dict(d, score=float(d.get("score", 1.0))) for d in dets],
                                   image_ids)["AP"]

    threshold_mode = (pseudo.get("info") or {}).get("mode") == "threshold" or (
        anns and all(a.get("point_ann_id", -1) < 0 for a in anns)
    )
    if threshold_mode:
        ious, report["coverage"] = best_overlap_ious(anns, points, coco_gt), None
        report["mean_iou_rule"] = "best_overlap"
    else:
        ious, covered = point_ious(anns, points, coco_gt)
        report["coverage"], report["mean_iou_rule"] = (float(covered.mean()) if len(points) else None), "click"
    report["mean_iou"] = float(ious.mean()) if len(points) else None
    report["levels"] = dict(sorted(Counter(int(a.get("level", -1)) for a in anns).items()))
    report["microscopy"] = annotation_microscopy(coco_gt, anns, image_ids, where=(pseudo.get("info") or {}).get(
        "mode") or "pseudo-labels")
    return {k: report[k] for k in REPORT_KEYS}


def clicked_gt(gt: Union[str, Mapping]) -> Tuple[COCO, list]:
    """The points_gt json (path or dict) as a ``COCO`` (1-based ids, unusable masks dropped) and its clicked
    true instances: non-crowd annotations minus ``info["no_point_annotation_ids"]``, in file order."""
    gt = as_coco(gt, "pseudo")
    no_point = set((gt.get("info") or {}).get("no_point_annotation_ids") or [])
    return _coco(gt), [a for a in gt["annotations"] if not a.get("iscrowd", 0) and a["id"] not in no_point]


def point_ious(anns, points, coco_gt: COCO):
    """IoU of each point's pseudo mask with its true mask, matched by ``point_ann_id`` == GT ``id``.

    Args:
        anns: pseudo-label annotations (one per point; should there be more, the highest score counts).
        points: the true annotations of the clicked instances (``clicked_gt``).
        coco_gt: the GT as a ``COCO`` (for ``annToRLE``).

    Returns:
        (ious, covered): two (len(points),) arrays, float IoU (0 without a pseudo mask) and bool.
    """
    by_point = {}
    for a in anns:
        pid = a.get("point_ann_id", -1)
        if pid >= 0 and (pid not in by_point or a.get("score", 0) > by_point[pid].get("score", 0)):
            by_point[pid] = a
    ious = np.zeros(len(points))
    covered = np.array([g["id"] in by_point for g in points], dtype=bool)
    rows_of_image = {}
    for k, g in enumerate(points):
        a = by_point.get(g["id"])
        if a is not None and a["image_id"] == g["image_id"]:
            rows_of_image.setdefault(g["image_id"], []).append(k)
    for rows in rows_of_image.values():  # one IoU matrix per image; its diagonal pairs point and GT
        dt = [by_point[points[k]["id"]]["segmentation"] for k in rows]
        gt = [coco_gt.annToRLE(points[k]) for k in rows]
        ious[rows] = np.diag(np.asarray(mask_util.iou(dt, gt, [0] * len(gt))).reshape(len(dt), len(gt)))
    return ious, covered


def best_overlap_ious(anns, points, coco_gt: COCO) -> np.ndarray:
    """Per point, the IoU of its true mask with the pseudo-label of ``anns`` that overlaps it most (0 with none):
    the mean IoU of a file whose pseudo-labels belong to no point. Returns a (len(points),) float array."""
    dets, rows_of_image = {}, {}
    for a in anns:
        dets.setdefault(a["image_id"], []).append(a["segmentation"])
    for k, g in enumerate(points):
        rows_of_image.setdefault(g["image_id"], []).append(k)
    ious = np.zeros(len(points))
    for image_id, rows in rows_of_image.items():  # one (pseudo-labels x points) IoU matrix per image
        dt = dets.get(image_id)
        if dt:
            gt = [coco_gt.annToRLE(points[k]) for k in rows]
            ious[rows] = np.asarray(mask_util.iou(dt, gt, [0] * len(gt))).reshape(len(dt), len(gt)).max(axis=0)
    return ious


def best_report(reports: Mapping[str, Mapping[str, object]]) -> Optional[str]:
    """Name of the best report: highest AP, then mean IoU, then AP_scored (None on missing values count
    lowest; ties: the first name in sorted order). None without reports."""
    def key(name):
        r = reports[name]
        return tuple(-1.0 if r.get(k) is None else float(r[k]) for k in ("AP", "mean_iou", "AP_scored"))
    names = sorted(reports)
    return max(names, key=key) if names else None


def _fmt(value, digits=2):
    return format_value(value, digits)


# (column, report key or microscopy key, digits) of the report tables, after the mode column
_COLUMNS = tuple((k, k, 2) for k in REPORT_KEYS[:7]) + (("mean_iou", "mean_iou", 3), ("coverage", "coverage", 3),
                                                         ("acc@0.5", "accuracy@0.5", 3), ("f1@0.5", "f1@0.5", 3),
                                                         ("dsb", "dsb", 3), ("seg", "seg", 3),
                                                         ("count err", "count_error", 1))
BEST_OVERLAP_NOTE = ("mean_iou marked *: no pseudo-label belongs to a click (threshold baseline); the IoU of each "
                     "clicked object with the pseudo-label that overlaps it most.")


def _cells(report: Mapping[str, object]) -> list:
    micro = report.get("microscopy") or {}
    cells = []
    for _, key, digits in _COLUMNS:
        cell = _fmt(micro[key] if key in micro else report.get(key), digits)
        if key == "mean_iou" and report.get("mean_iou_rule") == "best_overlap" and cell != "-":
            cell += "*"
        cells.append(cell)
    return cells


def _levels(report: Mapping[str, object], sep: str) -> str:
    return sep.join(f"{k}:{v}" if sep == " " else f"{k}: {v}" for k, v in (report.get("levels") or {}).items()) or "-"


def format_report(report: Mapping[str, object]) -> str:
    """The report as a small text table (microscopy columns: docs/RESULTS.md)."""
    lines = ["| " + " | ".join(c for c, _, _ in _COLUMNS) + " |", "|" + "---|" * len(_COLUMNS),
             "| " + " | ".join(_cells(report)) + " |", f"levels: {_levels(report, ', ')}"]
    if report.get("mean_iou_rule") == "best_overlap":
        lines.append(BEST_OVERLAP_NOTE)
    return "\n".join(lines)


def compare_reports(reports: Mapping[str, Mapping[str, object]], print_table: bool = True) -> str:
    """One markdown table comparing reports, e.g. {"threshold": r, "fixed_0": r, "adaptive": r, "oracle": r}.

    Returns:
        the table (also printed when ``print_table``).
    """
    cols = ["mode"] + [c for c, _, _ in _COLUMNS] + ["levels"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for name, r in reports.items():
        lines.append("| " + " | ".join([name] + _cells(r) + [_levels(r, " ")]) + " |")
    if any(r.get("mean_iou_rule") == "best_overlap" for r in reports.values()):
        lines += ["", BEST_OVERLAP_NOTE]
    table = "\n".join(lines)
    if print_table:
        print(table)
    return table
