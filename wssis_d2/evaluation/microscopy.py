"""Microscopy instance-segmentation metrics on label images (the conventions of StarDist, Cellpose, the Data
Science Bowl 2018 and the Cell Tracking Challenge; definitions: /work/shared/FORMATS.md section 5 and
docs/RESULTS.md "Microscopy metrics").

A **label image** is an (H, W) integer array (any signed or unsigned dtype, int32 / int64 included, so more
than 65,535 objects are fine), 0 = background, every other value one object (values need not be sequential).
Everything here is a pure function of (true, predicted) label images; mask stacks, whose masks may overlap,
are first painted into one label image (:func:`masks_to_label_image`, :func:`rles_to_label_image`:
predictions in ascending score, so the higher score wins a shared pixel; true masks in descending area, so a
small object stays visible on a large one). Objects hidden entirely by others are counted, not scored.

Per image (:func:`image_counts`): the pixel overlap of every (true, predicted) pair is counted once
(``np.unique`` on the pixel pairs: sparse, never an n_true x n_pred matrix), IoU = |T∩P| / |T∪P|.

* **Matching at IoU >= 0.5** is one-to-one: each predicted object keeps its highest-IoU true object, then
  each true object its highest-IoU predicted one. On label images (no overlaps on either side) this is a
  maximum matching with the largest IoU sum, i.e. what StarDist / Cellpose get from
  ``linear_sum_assignment`` with the cost ``-(iou >= t) - iou / (2 n_min)``: above IoU 0.5 a predicted object
  can match at most one true object and vice versa, and the only ambiguity (IoU exactly 0.5 with two objects:
  P = A ∪ B, |A| = |B|) has two candidates of equal IoU whose other ends match nothing else. A pair with IoU
  >= t > 0.5 is therefore matched at 0.5 too, so TP(t) is counted among the 0.5 matches. Thresholds are
  compared in exact integer arithmetic (20 · |T∩P| >= k · |T∪P| for t = k / 20).
* **Tie rules**: accuracy, precision, recall, F1 and the matched IoU count IoU **>=** t (StarDist, Cellpose,
  COCO); the DSB score counts IoU **>** t (Kaggle DSB 2018); SEG matches a reference object R to the
  predicted object S with |R∩S| **>** 0.5 |R| (CTC).

Over a set of images (:func:`summarize`, keys :data:`METRIC_KEYS`):

* ``accuracy@t`` = TP / (TP + FP + FN), ``precision@t`` = TP / (TP + FP), ``recall@t`` = TP / (TP + FN),
  ``f1@t`` = 2 TP / (2 TP + FP + FN), at t = 0.5 and 0.75: TP, FP, FN **pooled** over the images (StarDist
  ``matching_dataset``'s default).
* ``dsb``: per image the mean over t in {0.50, 0.55, ..., 0.95} of TP / (TP + FP + FN) (IoU > t), then the
  **mean over images**; an image with neither true nor predicted objects has no score and is left out.
* ``seg``: CTC SEG, the mean over **all** reference objects of the Jaccard index with their matched predicted
  object (0 when none covers more than half of it); false positives cost nothing (pooled).
* ``mean_matched_iou``: mean IoU of the TP pairs at IoU >= 0.5 (pooled: StarDist's ``mean_matched_score``).
* ``count_error``: mean over images of |n_pred - n_true|; ``count_error_rel``: mean over the images with true
  objects of |n_pred - n_true| / n_true.

A ratio whose denominator is 0 (e.g. precision with no predicted object, anything on a set without objects)
is NaN (``None`` in json, "-" in tables), never 0 or 1 by convention.
"""
import math
from typing import Dict, Iterable, Mapping, Sequence, Tuple

import numpy as np
import pycocotools.mask as mask_util

__all__ = ["IOU_TWENTIETHS", "METRIC_KEYS", "COUNT_KEYS", "iou_pairs", "image_counts", "summarize",
           "microscopy_scores", "masks_to_label_image", "rles_to_label_image", "format_value"]

IOU_TWENTIETHS = tuple(range(10, 20))  # the DSB thresholds 0.50, 0.55, ..., 0.95 as k / 20
METRIC_KEYS = ("accuracy@0.5", "precision@0.5", "recall@0.5", "f1@0.5", "accuracy@0.75", "f1@0.75", "dsb",
               "seg", "mean_matched_iou", "count_error", "count_error_rel")
# per-image counts of image_counts, summed or averaged by summarize
COUNT_KEYS = ("n_true", "n_pred", "tp", "tp_strict", "iou_sum", "seg_sum")


def _objects(label: np.ndarray, what: str) -> Tuple[np.ndarray, int, np.ndarray]:
    """(per pixel 1-based object index or 0 (flat int64), number of objects, areas (n,)) of a label image."""
    label = np.asarray(label)
    if label.dtype == bool:
        label = label.astype(np.uint8)
    if not np.issubdtype(label.dtype, np.integer):
        raise ValueError(f"{what} label image must be an integer array, got dtype {label.dtype}")
    flat = label.ravel()
    fg = flat != 0
    if fg.any() and flat[fg].min() < 0:
        raise ValueError(f"{what} label image has negative values")
    values, inverse = np.unique(flat[fg], return_inverse=True)
    index = np.zeros(flat.size, dtype=np.int64)
    index[fg] = inverse.ravel() + 1
    return index, len(values), np.bincount(inverse.ravel(), minlength=len(values)).astype(np.int64)


def iou_pairs(true: np.ndarray, pred: np.ndarray) -> dict:
    """The overlapping (true, predicted) object pairs of two label images of one shape.

    Returns:
        {"n_true", "n_pred", "true": (M,) 0-based true object index (in sorted label-value order),
        "pred": (M,), "inter": (M,) int64 |T∩P|, "union": (M,) int64 |T∪P|, "true_area": (n_true,)} for
        the M pairs that share at least one pixel.
    """
    if np.shape(true) != np.shape(pred):
        raise ValueError(f"true and predicted label images differ in shape: {np.shape(true)} vs {np.shape(pred)}")
    t, n_true, t_area = _objects(true, "true")
    p, n_pred, p_area = _objects(pred, "predicted")
    both = (t > 0) & (p > 0)
    key, inter = np.unique(t[both] * (n_pred + 1) + p[both], return_counts=True)
    ti, pi = key // (n_pred + 1) - 1, key % (n_pred + 1) - 1
    inter = inter.astype(np.int64)
    return {"n_true": n_true, "n_pred": n_pred, "true": ti, "pred": pi, "inter": inter,
            "union": t_area[ti] + p_area[pi] - inter, "true_area": t_area}


def _best_per(group: np.ndarray, inter: np.ndarray, union: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``keep`` restricted to the highest-IoU pair of each value of ``group`` (ties: the first pair)."""
    idx = np.flatnonzero(keep)
    iou = inter[idx] / union[idx]
    order = idx[np.lexsort((-iou, group[idx]))]
    _, first = np.unique(group[order], return_index=True)
    out = np.zeros_like(keep)
    out[order[first]] = True
    return out


def image_counts(true: np.ndarray, pred: np.ndarray) -> Dict[str, object]:
    """The counts of one image that :func:`summarize` needs (module docstring: matching and tie rules).

    Args:
        true, pred: (H, W) integer label images, 0 = background.

    Returns:
        {"n_true", "n_pred", "tp": [TP at IoU >= k/20 for k in IOU_TWENTIETHS], "tp_strict": [TP at
        IoU > k/20], "iou_sum": sum of the IoU of the TP pairs at IoU >= 0.5, "seg_sum": sum over reference
        objects of the Jaccard index of their SEG match} (plain ints / floats).
    """
    pairs = iou_pairs(true, pred)
    inter, union = pairs["inter"], pairs["union"]
    matched = _best_per(pairs["pred"], inter, union, 2 * inter >= union)
    matched = _best_per(pairs["true"], inter, union, matched)
    m_inter, m_union = inter[matched], union[matched]
    seg = 2 * inter > pairs["true_area"][pairs["true"]]  # |R∩S| > 0.5 |R|: at most one S per R
    return {
        "n_true": int(pairs["n_true"]), "n_pred": int(pairs["n_pred"]),
        "tp": [int((20 * m_inter >= k * m_union).sum()) for k in IOU_TWENTIETHS],
        "tp_strict": [int((20 * m_inter > k * m_union).sum()) for k in IOU_TWENTIETHS],
        "iou_sum": float((m_inter / m_union).sum()) if len(m_inter) else 0.0,
        "seg_sum": float((inter[seg] / union[seg]).sum()) if seg.any() else 0.0,
    }


def _ratio(a, b) -> float:
    return float(a) / float(b) if b else math.nan


def summarize(counts: Iterable[Mapping[str, object]]) -> Dict[str, float]:
    """The metrics :data:`METRIC_KEYS` of a set of images from their :func:`image_counts` (pooling rules in the
    module docstring), plus "num_images", "num_true", "num_pred" and "num_images_dsb" (images with a DSB
    score). NaN where a denominator is 0."""
    counts = list(counts)
    n_true = np.array([c["n_true"] for c in counts], dtype=np.int64)
    n_pred = np.array([c["n_pred"] for c in counts], dtype=np.int64)
    tp = np.array([c["tp"] for c in counts], dtype=np.int64).reshape(len(counts), len(IOU_TWENTIETHS))
    tp_strict = np.array([c["tp_strict"] for c in counts], dtype=np.int64).reshape(tp.shape)
    out = {}
    for t, k in ((0.5, 10), (0.75, 15)):
        tps = int(tp[:, IOU_TWENTIETHS.index(k)].sum())
        fp, fn = int(n_pred.sum()) - tps, int(n_true.sum()) - tps
        out[f"accuracy@{t}"] = _ratio(tps, tps + fp + fn)
        out[f"precision@{t}"] = _ratio(tps, tps + fp)
        out[f"recall@{t}"] = _ratio(tps, tps + fn)
        out[f"f1@{t}"] = _ratio(2 * tps, 2 * tps + fp + fn)
    denom = n_true[:, None] + n_pred[:, None] - tp_strict  # TP + FP + FN per image and threshold
    scored = (n_true + n_pred) > 0
    per_image = tp_strict[scored] / denom[scored]
    out["dsb"] = float(per_image.mean(axis=1).mean()) if scored.any() else math.nan
    out["seg"] = _ratio(sum(c["seg_sum"] for c in counts), n_true.sum())
    out["mean_matched_iou"] = _ratio(sum(c["iou_sum"] for c in counts), tp[:, 0].sum())
    err = np.abs(n_pred - n_true)
    out["count_error"] = float(err.mean()) if len(counts) else math.nan
    out["count_error_rel"] = float((err[n_true > 0] / n_true[n_true > 0]).mean()) if (n_true > 0).any() else math.nan
    out = {k: out[k] for k in METRIC_KEYS}
    out.update(num_images=len(counts), num_true=int(n_true.sum()), num_pred=int(n_pred.sum()),
               num_images_dsb=int(scored.sum()))
    return out


def microscopy_scores(true_labels: Sequence[np.ndarray], pred_labels: Sequence[np.ndarray]) -> Dict[str, float]:
    """:func:`summarize` of the pairs of label images (same order, same shapes)."""
    if len(true_labels) != len(pred_labels):
        raise ValueError(f"{len(true_labels)} true but {len(pred_labels)} predicted label images")
    return summarize(image_counts(t, p) for t, p in zip(true_labels, pred_labels))


def _paint(chunks: Iterable[Tuple[np.ndarray, np.ndarray]], height: int, width: int, n: int) -> np.ndarray:
    """Label image of masks given in ascending priority as chunks of ((k, H, W) bool, (k,) ids): a pixel gets
    the id of the highest-priority mask covering it."""
    label = np.zeros((height, width), dtype=np.int32 if n < 2**31 - 1 else np.int64)
    for masks, ids in chunks:
        if not len(ids):
            continue
        rank = np.arange(1, len(ids) + 1, dtype=np.uint8 if len(ids) < 256 else np.uint32)  # chunks of 64: uint8
        top = (masks * rank[:, None, None]).max(axis=0)  # 1 + the chunk's last (highest) mask per pixel, 0: none
        covered = top > 0
        label[covered] = np.asarray(ids, dtype=label.dtype)[top[covered].astype(np.int64) - 1]
    return label


def _priority_order(priority: Sequence[float]) -> np.ndarray:
    """Indices in ascending priority; equal priorities keep input order (the later one is painted on top)."""
    return np.argsort(np.asarray(priority, dtype=np.float64), kind="stable")


def masks_to_label_image(masks, priority: Sequence[float], chunk: int = 64) -> np.ndarray:
    """Paint (K, H, W) bool masks (numpy or torch) into an (H, W) label image: object k gets id k + 1, a pixel
    covered by several masks the one of highest ``priority`` (e.g. the score; ties: the later mask). A mask
    hidden entirely by others leaves no pixel (``np.unique`` of the result tells)."""
    if hasattr(masks, "detach"):
        masks = masks.detach().to("cpu").numpy()
    masks = np.asarray(masks, dtype=bool)
    k, h, w = masks.shape
    order = _priority_order(priority)
    return _paint(((masks[order[s:s + chunk]], order[s:s + chunk] + 1) for s in range(0, k, chunk)), h, w, k)


def rles_to_label_image(rles: Sequence[dict], height: int, width: int, priority: Sequence[float],
                        chunk: int = 64) -> np.ndarray:
    """:func:`masks_to_label_image` of COCO RLEs (decoded ``chunk`` at a time; object k gets id k + 1)."""
    order = _priority_order(priority)

    def chunks():
        for s in range(0, len(rles), chunk):
            part = order[s:s + chunk]
            masks = mask_util.decode([rles[i] for i in part])  # (H, W, k)
            if masks.shape[:2] != (height, width):
                raise ValueError(f"an RLE of size {masks.shape[:2]} in a label image of size {(height, width)}")
            yield np.moveaxis(masks, -1, 0).view(bool), part + 1
    return _paint(chunks(), height, width, len(rles))


def format_value(value, digits: int = 3) -> str:
    """A metric for a table: "-" for None / NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"
