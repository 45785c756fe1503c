"""Tiles over large images (pure functions, no ``nn.Module``): where the tiles lie, which tile decodes
each click, which of two overlapping detections from different tiles stays, and how tile-local masks go
back into the image.

Coordinates: detectron2's continuous pixel convention of the (unscaled) image: pixel (row i, col j)
covers [j, j + 1) x [i, i + 1). A tile box is (x0, y0, x1, y1) in whole pixels, x1 / y1 exclusive.
Shape shorthand: T tiles, M points, K detections, (H, W) the image, (th, tw) one tile.

Rules (tested in ``tests/test_tiling.py``):

- **Layout** (``tile_boxes``): per axis, a side <= the tile size gets one tile spanning it; a longer side
  gets n = ceil((side - size) / (size - overlap)) + 1 tiles of exactly ``size`` pixels whose starts are
  spread evenly from 0 to side - size (rounded), so that every tile lies inside the image, all tiles have
  one size and neighbours overlap by at least ``overlap`` pixels. Tiles are numbered row-major.
- **Best tile of a point** (``best_tiles``): the tile that holds the point and where the point lies
  farthest from the tile's *inner* borders (a tile edge on the image border is no border: nothing lies
  beyond it). Ties go to the lower tile index. A point on the right / bottom image border (x = W) belongs
  to the last tile, as it belongs to the last grid cell.
- **Cross-tile duplicates** (``merge_order`` + ``greedy_keep``): two same-class detections from different
  tiles are one object when their intersection over the smaller mask exceeds a threshold. Detections are
  visited whole-first (a mask that does not touch its tile's inner borders), then by score; a kept one
  removes its later duplicates. A cut copy of an object is contained in the whole one (intersection over
  the smaller ~ 1), so with an overlap at least as large as the objects the whole copy stays.
"""
import math
from typing import List, Sequence, Tuple

import torch

from ..utils.errors import WSSISInputError

__all__ = [
    "overlap_pixels",
    "check_tile_settings",
    "tile_boxes",
    "inner_border_distances",
    "best_tiles",
    "border_margins",
    "greedy_keep",
    "merge_order",
    "cross_tile_intersections",
    "paste_tile_masks",
]


def overlap_pixels(size: int, overlap: float) -> int:
    """Tile overlap in pixels: ``overlap`` itself if >= 1, else that fraction of ``size`` (rounded)."""
    return int(round(overlap if overlap >= 1 else overlap * size))


def check_tile_settings(size: int, overlap: float, scale: float, min_input_side: int = 1,
                        scale_range: Sequence[float] = (1.0, 1.0)) -> None:
    """Raise ``WSSISInputError`` naming the ``INPUT.TILE`` key when the settings cannot work.

    Args:
        size: INPUT.TILE.SIZE (0 = off: nothing to check).
        overlap: INPUT.TILE.OVERLAP (pixels or fraction).
        scale: INPUT.TILE.SCALE.
        min_input_side: the model's largest stride: a scaled tile must be at least that large.
        scale_range: INPUT.TILE.TRAIN_SCALE_RANGE (lo, hi).
    """
    if size == 0:
        return
    if size < 0:
        raise WSSISInputError(f"INPUT.TILE.SIZE must be >= 0 (0 = no tiles), got {size}")
    if overlap < 0:
        raise WSSISInputError(f"INPUT.TILE.OVERLAP must be >= 0 (pixels, or a fraction of SIZE), got {overlap}")
    if overlap_pixels(size, overlap) >= size:
        raise WSSISInputError(f"INPUT.TILE.OVERLAP ({overlap} = {overlap_pixels(size, overlap)} px) must be "
                              f"smaller than INPUT.TILE.SIZE ({size} px)")
    if not scale > 0:
        raise WSSISInputError(f"INPUT.TILE.SCALE must be > 0, got {scale}")
    lo, hi = (float(v) for v in scale_range)
    if not 0 < lo <= hi:
        raise WSSISInputError(f"INPUT.TILE.TRAIN_SCALE_RANGE must be (lo, hi) with 0 < lo <= hi, got {scale_range}")
    if size * scale * lo < min_input_side:
        raise WSSISInputError(
            f"INPUT.TILE.SIZE x SCALE ({size} x {scale * lo:g} = {size * scale * lo:g} px) is smaller than the "
            f"model's largest stride ({min_input_side} px): use larger tiles or a larger scale"
        )


def _starts(side: int, size: int, overlap: int) -> List[int]:
    if side <= size:
        return [0]
    n = math.ceil((side - size) / (size - overlap)) + 1
    return [int(round(i * (side - size) / (n - 1))) for i in range(n)]


def tile_boxes(height: int, width: int, size: int, overlap: int) -> torch.Tensor:
    """The tiles covering an image (module docstring, "Layout").

    Args:
        height, width: image size in pixels.
        size: tile side in pixels (> ``overlap``).
        overlap: minimum overlap of neighbouring tiles in pixels.

    Returns:
        (T, 4) long (x0, y0, x1, y1), row-major; every tile is min(size, H) x min(size, W).
    """
    ys, xs = _starts(height, size, overlap), _starts(width, size, overlap)
    th, tw = min(size, height), min(size, width)
    return torch.tensor([[x, y, x + tw, y + th] for y in ys for x in xs], dtype=torch.long).reshape(-1, 4)


def inner_border_distances(points: torch.Tensor, boxes: torch.Tensor, image_hw: Tuple[int, int]) -> torch.Tensor:
    """Distance of each point to the nearest *inner* border of each tile; -inf where the tile does not
    hold the point, +inf for a tile whose edges all lie on the image border (a single tile).

    Args:
        points: (M, 2) float (x, y) image pixels.
        boxes: (T, 4) long tiles (``tile_boxes``).
        image_hw: (H, W).

    Returns:
        (M, T) float.
    """
    h, w = image_hw
    b = boxes.to(device=points.device, dtype=torch.float32)
    x, y = points[:, 0:1].float(), points[:, 1:2].float()  # (M, 1)
    x0, y0, x1, y1 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]  # (T,)
    inf = torch.tensor(float("inf"), device=points.device)
    # Per edge: the distance, or +inf when the edge is the image border.
    d = torch.stack([
        torch.where(x0 > 0, x - x0, inf),
        torch.where(y0 > 0, y - y0, inf),
        torch.where(x1 < w, x1 - x, inf),
        torch.where(y1 < h, y1 - y, inf),
    ]).amin(dim=0)  # (M, T)
    # A tile holds [x0, x1) x [y0, y1); the image's right / bottom border itself belongs to the last tiles.
    inside = (x >= x0) & (y >= y0) & ((x < x1) | (x1 >= w)) & ((y < y1) | (y1 >= h))
    return torch.where(inside, d, torch.tensor(float("-inf"), device=points.device))


def best_tiles(points: torch.Tensor, boxes: torch.Tensor, image_hw: Tuple[int, int]) -> torch.Tensor:
    """Index of the tile that decodes each point (module docstring, "Best tile of a point").

    Points outside the image are clamped into it first (the caller flags them invalid anyway).

    Args:
        points: (M, 2) float (x, y) image pixels; boxes: (T, 4) tiles; image_hw: (H, W).

    Returns:
        (M,) long tile index.
    """
    h, w = image_hw
    pts = torch.stack([points[:, 0].clamp(0, w), points[:, 1].clamp(0, h)], dim=1)
    dist = inner_border_distances(pts, boxes, image_hw)
    if dist.numel() == 0:
        return torch.zeros(points.shape[0], dtype=torch.long, device=points.device)
    # argmax returns the first maximum: ties go to the lower tile index.
    return dist.argmax(dim=1)


def border_margins(det_boxes: torch.Tensor, tiles: torch.Tensor, image_hw: Tuple[int, int]) -> torch.Tensor:
    """How far each detection stays from its tile's inner borders.

    Args:
        det_boxes: (K, 4) float XYXY boxes in image pixels (x1 / y1 exclusive, as ``mask_boxes``).
        tiles: (K, 4) long, the tile of each detection.
        image_hw: (H, W).

    Returns:
        (K,) float pixels; 0 for a mask that touches an inner border (cut by the tile), +inf when none of
        its tile's edges is inner.
    """
    h, w = image_hw
    t = tiles.to(det_boxes)
    inf = torch.full_like(det_boxes[:, 0], float("inf"))
    d = torch.stack([
        torch.where(t[:, 0] > 0, det_boxes[:, 0] - t[:, 0], inf),
        torch.where(t[:, 1] > 0, det_boxes[:, 1] - t[:, 1], inf),
        torch.where(t[:, 2] < w, t[:, 2] - det_boxes[:, 2], inf),
        torch.where(t[:, 3] < h, t[:, 3] - det_boxes[:, 3], inf),
    ])
    return d.amin(dim=0).clamp(min=0)


def greedy_keep(suppresses: torch.Tensor) -> torch.Tensor:
    """Exact greedy suppression, vectorised.

    Visiting items in index order, an item is kept unless an earlier *kept* item suppresses it. That is
    the unique solution of keep[i] = not any(keep[j] and suppresses[i, j] for j < i); it is found by
    iterating the equation from all-kept: one (K, K) op per iteration, stopping at the fixed point after
    (suppression chain depth + 1) iterations, usually 2-3, never more than K + 1.

    Args:
        suppresses: (K, K) bool, [i, j] True when item j would suppress item i (only j < i is used).

    Returns:
        (K,) bool, True for kept items.
    """
    num = suppresses.shape[0]
    suppresses = torch.tril(suppresses, diagonal=-1)
    keep = torch.ones(num, dtype=torch.bool, device=suppresses.device)
    for _ in range(num + 1):
        new_keep = ~(suppresses & keep[None, :]).any(dim=1)
        if torch.equal(new_keep, keep):
            break
        keep = new_keep
    return keep


def merge_order(margins: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Visiting order of the cross-tile merge: whole detections (margin > 0) first, then by score.

    Args:
        margins: (K,) ``border_margins``; scores: (K,).

    Returns:
        (K,) long permutation.
    """
    by_score = torch.sort(scores, descending=True, stable=True).indices
    cut = (margins[by_score] <= 0).to(torch.int8)
    return by_score[torch.sort(cut, stable=True).indices]


def cross_tile_intersections(masks: Sequence[torch.Tensor], tiles: torch.Tensor) -> torch.Tensor:
    """Pixel intersections between detections of *different* tiles.

    Only the region two tiles share can hold common pixels, so each pair of overlapping tiles costs one
    matrix product over that region (the loop is over tile pairs, never over detections).

    Args:
        masks: T tensors (K_t, th, tw) bool, the detections of each tile in tile pixels.
        tiles: (T, 4) long tile boxes.

    Returns:
        (K, K) float, K = sum K_t in tile order; 0 on same-tile pairs and for tiles that do not overlap.
    """
    counts = [m.shape[0] for m in masks]
    starts = [0]
    for c in counts:
        starts.append(starts[-1] + c)
    device = masks[0].device if masks else tiles.device
    inter = torch.zeros((starts[-1], starts[-1]), device=device)
    box = tiles.tolist()
    for a in range(len(masks)):
        for b in range(a + 1, len(masks)):
            if not counts[a] or not counts[b]:
                continue
            x0, y0 = max(box[a][0], box[b][0]), max(box[a][1], box[b][1])
            x1, y1 = min(box[a][2], box[b][2]), min(box[a][3], box[b][3])
            if x1 <= x0 or y1 <= y0:
                continue
            ra = masks[a][:, y0 - box[a][1]: y1 - box[a][1], x0 - box[a][0]: x1 - box[a][0]].flatten(1).float()
            rb = masks[b][:, y0 - box[b][1]: y1 - box[b][1], x0 - box[b][0]: x1 - box[b][0]].flatten(1).float()
            block = ra @ rb.t()
            inter[starts[a]: starts[a + 1], starts[b]: starts[b + 1]] = block
            inter[starts[b]: starts[b + 1], starts[a]: starts[a + 1]] = block.t()
    return inter


def paste_tile_masks(masks: Sequence[torch.Tensor], rows: Sequence[torch.Tensor], tiles: torch.Tensor,
                     image_hw: Tuple[int, int], num: int) -> torch.Tensor:
    """Tile-local masks pasted into full-image masks.

    Args:
        masks: per tile, (K_t, th, tw) bool in tile pixels.
        rows: per tile, (K_t,) long: the output row of each mask.
        tiles: (T, 4) long boxes of those tiles.
        image_hw: (H, W).
        num: K, number of output rows (every row is written once).

    Returns:
        (K, H, W) bool.
    """
    device = masks[0].device if len(masks) else tiles.device
    out = torch.zeros((num,) + tuple(image_hw), dtype=torch.bool, device=device)
    for m, r, (x0, y0, x1, y1) in zip(masks, rows, tiles.tolist()):
        if m.shape[0]:
            out[r, y0:y1, x0:x1] = m
    return out
