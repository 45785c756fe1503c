"""What the clicks say about their masks, one image at a time (pure functions on COCO RLEs).

Every measure runs in pycocotools' C code on run-length encoded masks (no (N, H, W) arrays, no loop over
clicks): a click is a 1 x 1 box RLE, a border a merged strip RLE, and ``mask_util.iou`` with ``iscrowd``
set gives intersection / area of the first argument, i.e. "is this pixel in that mask" or "how many of
this mask's pixels lie on that strip".

Coordinates: continuous pixel coordinates (docs/DATA.md); a click (x, y) lies in pixel (row int(y),
column int(x)), clamped into the image, as ``pseudo.labels.fallback_disk`` and ``data.click_gt`` take it.
Shapes: N clicks (one mask each), K detections, T tiles, (H, W) the image.
"""
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pycocotools.mask as mask_util
import torch

from ..data.coco_masks import rle_areas
from ..modeling.tiling import best_tiles, greedy_keep, overlap_pixels, tile_boxes

__all__ = ["pixel_rles", "in_masks", "cut_pixels", "tile_edge_rles", "tile_grid", "click_signals", "plain_signals", "area_stats",
           "area_zscores", "find_orphans", "SIGNALS"]

# Keys of ``click_signals``' result.
SIGNALS = ("contains", "other_clicks", "overlap", "overlap_with", "mrn_iou", "image_cut", "tile_cut")


def pixel_rles(points: np.ndarray, height: int, width: int) -> List[dict]:
    """One 1 x 1 RLE per (x, y) point: the pixel it lies in, clamped into the image."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    cols = np.clip(np.floor(pts[:, 0]), 0, width - 1)
    rows = np.clip(np.floor(pts[:, 1]), 0, height - 1)
    boxes = np.stack([cols, rows, np.ones_like(cols), np.ones_like(rows)], axis=1)
    return mask_util.frPyObjects(boxes, height, width) if len(boxes) else []


def _ratio(a: Sequence[dict], b: Sequence[dict]) -> np.ndarray:
    """(len(a), len(b)) |a_i & b_j| / |a_i| (0 for an empty a_i)."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    return np.asarray(mask_util.iou(list(a), list(b), [1] * len(b)), dtype=np.float64).reshape(len(a), len(b))


def in_masks(points: np.ndarray, rles: Sequence[dict], height: int, width: int) -> np.ndarray:
    """(P, K) bool: point p lies in mask k."""
    return _ratio(pixel_rles(points, height, width), rles) > 0.5


def _strip_rle(boxes: Sequence[Sequence[float]], height: int, width: int) -> dict:
    """The union of (x, y, w, h) boxes as one RLE (an empty RLE for no box)."""
    if not len(boxes):
        return mask_util.encode(np.zeros((height, width), dtype=np.uint8, order="F"))
    return mask_util.merge(mask_util.frPyObjects(np.asarray(boxes, dtype=np.float64), height, width), intersect=False)


def cut_pixels(rles: Sequence[dict], strips: Sequence[dict], areas: np.ndarray) -> np.ndarray:
    """(N, S) number of mask n's pixels on strip s."""
    return np.rint(_ratio(rles, strips) * np.asarray(areas, dtype=np.float64)[:, None])


def tile_edge_rles(tiles: torch.Tensor, height: int, width: int) -> List[dict]:
    """Per tile, its *inner* edges as one RLE: the tile's first / last row / column that does not lie on
    the image border (a mask there was cut by the tile when it was decoded in it; ``tiling`` module)."""
    out = []
    for x0, y0, x1, y1 in tiles.tolist():
        tw, th = x1 - x0, y1 - y0
        boxes = ([[x0, y0, 1, th]] if x0 > 0 else []) + ([[x0, y0, tw, 1]] if y0 > 0 else []) + \
                ([[x1 - 1, y0, 1, th]] if x1 < width else []) + ([[x0, y1 - 1, tw, 1]] if y1 < height else [])
        out.append(_strip_rle(boxes, height, width))
    return out


def tile_grid(size: int, overlap: float):
    """``tiles(h, w) -> (T, 4)`` of ``INPUT.TILE.SIZE`` / ``OVERLAP`` (``tiling.tile_boxes``), None when tiles
    are off (size 0)."""
    if int(size) <= 0:
        return None
    pixels = overlap_pixels(int(size), float(overlap))
    return lambda h, w: tile_boxes(h, w, int(size), pixels)


def click_signals(rles: Sequence[dict], points: np.ndarray, image_hw: Tuple[int, int], *,
                  has_mask: Optional[np.ndarray] = None, coarse: Optional[Sequence[Optional[dict]]] = None,
                  tiles: Optional[torch.Tensor] = None) -> Dict[str, np.ndarray]:
    """Raw review measures of the N clicks of one image, each with its mask.

    Args:
        rles: N RLE masks (the final ones: refined when a MaskRefineNet ran, fallback disks included).
        points: (N, 2) clicks (x, y).
        image_hw: (H, W).
        has_mask: (N,) bool, False for a click without a real mask (fallback): its row is neutral and its
            mask takes no part in the other clicks' overlap / two-click measures. Default: all True.
        coarse: N teacher masks before refinement (None where there is none), or None.
        tiles: (T, 4) tiles the masks were decoded in (``tiling.tile_boxes``), or None (no tiles).

    Returns:
        {"contains": (N,) bool, the click lies in its own mask;
         "other_clicks": (N,) int, other clicks of the image inside this mask;
         "overlap": (N,) float, max over the other clicks' masks of intersection / the smaller area;
         "overlap_with": (N,) int, the index of that mask (-1: none);
         "mrn_iou": (N,) float, IoU of the mask with its coarse mask (NaN: no coarse mask);
         "image_cut", "tile_cut": (N,) float, mask pixels on the image border / on the inner edges of the
         click's tile (``tiling.best_tiles``), divided by sqrt(area): ~1 when a whole side is cut}.
    """
    h, w = image_hw
    n = len(rles)
    has = np.ones(n, dtype=bool) if has_mask is None else np.asarray(has_mask, dtype=bool)
    pts = np.asarray(points, dtype=np.float64).reshape(n, 2)
    areas = np.asarray(rle_areas(list(rles)), dtype=np.float64).reshape(n)
    inside = in_masks(pts, rles, h, w)  # (N clicks, N masks)
    contains = np.diagonal(inside).copy() | ~has
    others = inside & ~np.eye(n, dtype=bool) & has[None, :]
    other_clicks = others.sum(0)
    ratio = _ratio(rles, rles)  # I / A_i
    pair = np.maximum(ratio, ratio.T)  # I / min(A_i, A_j)
    pair[~has, :] = 0
    pair[:, ~has] = 0
    np.fill_diagonal(pair, 0)
    overlap = pair.max(1) if n else np.zeros(0)
    overlap_with = np.where(overlap > 0, pair.argmax(1) if n else -1, -1)
    mrn_iou = np.full(n, np.nan)
    if coarse is not None:
        rows = [k for k in range(n) if coarse[k] is not None and has[k]]
        if rows:
            mrn_iou[rows] = np.diag(np.asarray(mask_util.iou([rles[k] for k in rows], [coarse[k] for k in rows],
                                                             [0] * len(rows))).reshape(len(rows), len(rows)))
    norm = np.sqrt(np.maximum(areas, 1.0))
    border = _strip_rle([[0, 0, w, 1], [0, h - 1, w, 1], [0, 0, 1, h], [w - 1, 0, 1, h]], h, w)
    image_cut = cut_pixels(rles, [border], areas)[:, 0] / norm if n else np.zeros(0)
    tile_cut = np.zeros(n)
    if tiles is not None and len(tiles) > 1 and n:
        best = best_tiles(torch.as_tensor(pts, dtype=torch.float32), tiles, (h, w)).numpy()
        tile_cut = cut_pixels(rles, tile_edge_rles(tiles, h, w), areas)[np.arange(n), best] / norm
    out = {"contains": contains, "other_clicks": other_clicks, "overlap": overlap, "overlap_with": overlap_with,
           "mrn_iou": mrn_iou, "image_cut": image_cut, "tile_cut": tile_cut}
    for key in ("other_clicks", "overlap", "image_cut", "tile_cut"):
        out[key] = np.where(has, out[key], 0)
    return out


def plain_signals(rles: Sequence[dict], points: np.ndarray, det_rles: Sequence[dict], det_scores: np.ndarray,
                  image_hw: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """What a click-free pass says about the N clicks' masks: (has (N,) bool, a detection contains the click;
    iou (N,) float, IoU of the mask with the highest-scored such detection, NaN where there is none)."""
    n, k = len(rles), len(det_rles)
    if not n or not k:
        return np.zeros(n, dtype=bool), np.full(n, np.nan)
    hit = in_masks(points, det_rles, *image_hw)  # (N, K)
    best = np.where(hit, np.asarray(det_scores, dtype=np.float64)[None, :], -np.inf).argmax(1)
    iou = np.asarray(mask_util.iou(list(rles), list(det_rles), [0] * k)).reshape(n, k)[np.arange(n), best]
    has = hit.any(1)
    return has, np.where(has, iou, np.nan)


def area_stats(annotations: Iterable[Mapping], min_count: int = 3, min_sigma: float = 0.25
               ) -> Dict[object, Tuple[float, float, int]]:
    """{category_id: (mean, std, count) of log(area)} of non-crowd masks with area > 0, and the pooled
    statistics under key None; a class with fewer than ``min_count`` masks gets the pooled ones; the std
    is at least ``min_sigma`` (log units: a factor e^0.25 = 1.28)."""
    by_class: Dict[object, List[float]] = {}
    for a in annotations:
        if not a.get("iscrowd", 0) and a.get("area", 0) > 0:
            by_class.setdefault(a["category_id"], []).append(float(np.log(a["area"])))
    pooled = [v for vs in by_class.values() for v in vs]

    def stats(values):
        return (float(np.mean(values)), max(float(np.std(values)), min_sigma), len(values)) if values else None
    out = {None: stats(pooled)}
    for c, values in by_class.items():
        out[c] = stats(values) if len(values) >= min_count else out[None]
    return out


def area_zscores(areas: np.ndarray, classes: Sequence, stats: Mapping) -> np.ndarray:
    """(N,) |log(area) - class mean| / class std (``area_stats``); 0 where no statistics exist or area is 0."""
    areas = np.asarray(areas, dtype=np.float64)
    pooled = stats.get(None)
    ms = [stats.get(c, pooled) or (0.0, 1.0, 0) for c in classes]
    mu = np.array([m[0] for m in ms]).reshape(-1)
    sigma = np.array([m[1] for m in ms]).reshape(-1)
    known = np.array([m[2] > 0 for m in ms], dtype=bool).reshape(-1) & (areas > 0)
    z = np.abs(np.log(np.maximum(areas, 1.0)) - mu) / sigma
    return np.where(known, z, 0.0)


def find_orphans(det_rles: Sequence[dict], det_scores: np.ndarray, points: np.ndarray, click_rles: Sequence[dict],
                 image_hw: Tuple[int, int], *, min_score: float, max_iou: float = 0.5, click_iou: float = 0.2,
                 has_mask: Optional[np.ndarray] = None) -> np.ndarray:
    """(K,) bool: confident detections of a click-free pass that belong to no click (likely missed clicks).

    A detection belongs to a click when it holds the click and its IoU with the click's mask is >= ``click_iou``
    (a detection over a clicked and an unclicked object does not), or when at least ``max_iou`` of it lies
    inside a click's mask (a part of a clicked object). Orphans: score >= ``min_score`` and no click; of two
    whose intersection / the smaller mask is >= ``max_iou`` only the higher-scored one stays (one object, one
    orphan: ``tiling.greedy_keep``).

    Args:
        points, click_rles: the N clicks and their masks, aligned; ``has_mask`` (N,) False for a click without
            a real mask (fallback): holding it is enough, its disk is not compared.
    """
    h, w = image_hw
    k, n = len(det_rles), len(points)
    if not k:
        return np.zeros(0, dtype=bool)
    has = np.ones(n, dtype=bool) if has_mask is None else np.asarray(has_mask, dtype=bool)
    confident = np.asarray(det_scores, dtype=np.float64) >= min_score
    clicked = np.zeros(k, dtype=bool)
    matched = np.zeros(k, dtype=bool)
    if n:
        hold = in_masks(points, det_rles, h, w).T  # (K, N)
        iou = np.asarray(mask_util.iou(list(det_rles), list(click_rles), [0] * n)).reshape(k, n)
        clicked = (hold & ((iou >= click_iou) | ~has[None, :])).any(1)
        matched = ((_ratio(det_rles, click_rles) >= max_iou) & has[None, :]).any(1)  # inside a click's mask
    cand = np.flatnonzero(confident & ~clicked & ~matched)
    cand = cand[np.argsort(-np.asarray(det_scores, dtype=np.float64)[cand], kind="stable")]
    ratio = _ratio([det_rles[i] for i in cand], [det_rles[i] for i in cand])
    keep = greedy_keep(torch.as_tensor(np.maximum(ratio, ratio.T) >= max_iou)).numpy()
    out = np.zeros(k, dtype=bool)
    out[cand[keep]] = True
    return out
