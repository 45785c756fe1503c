"""Overlapping object masks -> one label image (one id per pixel), losses counted (label images, CTC).

Label images cannot hold overlaps (Cellpose, StarDist, napari, Fiji, the Cell Tracking Challenge). Masks are
never summed: each pixel goes to one object, chosen by the overlap ``rule``:

* ``"score"`` (default): the higher score wins (ties: the earlier annotation);
* ``"area"``: the smaller object wins (small objects stay visible; ties: the earlier annotation);
* ``"order"``: the later annotation wins (QuPath's label export paints in order).

Then every object whose click pixel (pixel (row floor(y), col floor(x)) of its click (x, y)) lies in its own
mask gets that pixel back with its own id, whatever the rule (clicks sharing a pixel: the rule decides).
Objects left with no pixel are **lost**: they get no id, and are reported by annotation index, never
silently. Ids are then 1..M over the kept objects **in the input (annotation) order**, so they are
sequential (Cellpose's GUI renumbers ids that are not) and the k-th kept annotation has id k.
dtype: uint16, or uint32 when M > 65,535 (never uint8: ids capped at 255).

Vectorised: one ``np.maximum.at`` over all objects' pixels (flat indices), no loop over objects.
"""
from typing import Dict, Optional, Sequence

import numpy as np

__all__ = ["OVERLAP_RULES", "label_dtype", "flatten_objects", "flatten_masks"]

OVERLAP_RULES = ("score", "area", "order")


def label_dtype(num_ids: int) -> type:
    """uint16 for up to 65,535 ids, else uint32."""
    return np.uint16 if num_ids <= np.iinfo(np.uint16).max else np.uint32


def flatten_objects(pixels: Sequence[np.ndarray], shape, *, scores: Optional[Sequence[float]] = None,
                    clicks: Optional[np.ndarray] = None, rule: str = "score") -> Dict[str, object]:
    """Flatten objects given as pixel lists into one label image (module docstring: rule, ids, losses).

    Args:
        pixels: per object, the flat (row-major) indices of its mask pixels in an image of ``shape``.
        shape: (H, W).
        scores: (N,) object scores (rule "score"; default all equal).
        clicks: (N, 2) clicks [x, y] in continuous pixel coordinates (pixel (i, j) centre = (j + 0.5,
            i + 0.5)); NaN rows for objects without a click. None: no clicks.
        rule: one of ``OVERLAP_RULES``.

    Returns:
        {"labels": (H, W) uint16/uint32 label image, "ids": (N,) int64 id of each object (0 = lost),
         "lost": (N,) bool, "hidden_pixels": (N,) int64 pixels of each object given to another,
         "clicks_restored": int (click pixels given back to their object),
         "clicks_outside_mask": (N,) bool (a click not on its own mask: its pixel is left to the rule)}
    """
    if rule not in OVERLAP_RULES:
        raise ValueError(f"unknown overlap rule {rule!r}; choose from {list(OVERLAP_RULES)}")
    h, w = int(shape[0]), int(shape[1])
    n = len(pixels)
    sizes = np.array([len(p) for p in pixels], np.int64)
    owner = np.repeat(np.arange(n), sizes)
    flat = np.concatenate([np.asarray(p, np.int64) for p in pixels]) if n else np.zeros(0, np.int64)
    index = np.arange(n)
    if rule == "score":
        s = np.zeros(n) if scores is None else np.asarray(scores, np.float64)
        paint = np.lexsort((-index, s))  # ascending score; among equal scores the earlier annotation last
    elif rule == "area":
        paint = np.lexsort((-index, -sizes))  # descending area: the smallest painted last
    else:
        paint = index
    rank = np.empty(n, np.int64)
    rank[paint] = np.arange(n)
    # a pixel goes to the object of highest priority: its own click pixel first, then the rule's rank
    prio = rank[owner]
    click_pix = np.full(n, -1, np.int64)
    outside = np.zeros(n, bool)
    if clicks is not None and n:
        xy = np.asarray(clicks, np.float64)
        has = ~np.isnan(xy).any(axis=1)
        col = np.clip(np.floor(np.nan_to_num(xy[:, 0])), 0, w - 1).astype(np.int64)
        row = np.clip(np.floor(np.nan_to_num(xy[:, 1])), 0, h - 1).astype(np.int64)
        click_pix = np.where(has, row * w + col, -1)
        on_click = flat == click_pix[owner]
        prio = prio + n * on_click
        in_own = np.zeros(n, bool)
        in_own[owner[on_click]] = True
        outside = has & ~in_own
    best = np.full(h * w, -1, np.int64)
    np.maximum.at(best, flat, prio)
    winner = np.full(h * w, -1, np.int64)
    covered = best >= 0
    winner[covered] = paint[best[covered] % max(n, 1)]
    kept_pixels = np.bincount(winner[covered], minlength=n)
    lost = kept_pixels == 0
    ids = np.zeros(n, np.int64)
    ids[~lost] = np.arange(1, int((~lost).sum()) + 1)
    labels = np.zeros(h * w, label_dtype(int((~lost).sum())))
    labels[covered] = ids[winner[covered]]
    # click pixels the rule alone would have given to another object
    clicked = np.flatnonzero((click_pix >= 0) & ~outside)
    at_click = np.isin(flat, click_pix[clicked])
    by_rule = np.full(h * w, -1, np.int64)
    np.maximum.at(by_rule, flat[at_click], rank[owner[at_click]])
    restored = int(np.count_nonzero(paint[by_rule[click_pix[clicked]]] != clicked))
    return {"labels": labels.reshape(h, w), "ids": ids, "lost": lost, "hidden_pixels": sizes - kept_pixels,
            "clicks_restored": restored, "clicks_outside_mask": outside}


def flatten_masks(masks: np.ndarray, **kwargs) -> Dict[str, object]:
    """:func:`flatten_objects` of (N, H, W) bool masks (small images, tests)."""
    masks = np.asarray(masks, bool)
    flat = masks.reshape(len(masks), -1)
    return flatten_objects([np.flatnonzero(m) for m in flat], masks.shape[1:], **kwargs)
