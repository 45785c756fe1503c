"""Tiles over large images (pure functions, no ``nn.Module``): where the tiles lie, which tile decodes
each click, and which detections of different tiles are one object (the cross-tile merge).

Coordinates: detectron2's continuous pixel convention of the (unscaled) image: pixel (row i, col j)
covers [j, j + 1) x [i, i + 1). A tile box is (x0, y0, x1, y1) in whole pixels, x1 / y1 exclusive.
Shape shorthand: T tiles, M points, K detections, (H, W) the image, (th, tw) one tile.

Rules (tested in ``tests/test_tiling.py`` and ``tests/test_tile_merge.py``):

- **Layout** (``tile_boxes``): per axis, a side <= the tile size gets one tile spanning it; a longer side
  gets n = ceil((side - size) / (size - overlap)) + 1 tiles of exactly ``size`` pixels whose starts are
  spread evenly from 0 to side - size (rounded), so that every tile lies inside the image, all tiles have
  one size and neighbours overlap by at least ``overlap`` pixels. Tiles are numbered row-major.
- **Best tile of a point** (``best_tiles``): the tile that holds the point and where the point lies
  farthest from the tile's *inner* borders (a tile edge on the image border is no border: nothing lies
  beyond it). Ties go to the lower tile index. A point on the right / bottom image border (x = W) belongs
  to the last tile, as it belongs to the last grid cell.
- **Cross-tile duplicates** (``seam_iou``, ``merge_order``, ``greedy_keep_sparse``): a copy is removed
  only when it is the same object seen from another tile. A perfect detector on tile A reports object O as
  O n A. So two copies a (tile A) and b (tile B) of one object agree on the window both tiles see,
  S = A n B (both are O n S there), and a copy that is *whole* in its tile (its box stays clear of the
  tile's inner borders: ``border_margins`` above one mask-feature cell, 4 model pixels, since a predicted
  mask edge is not known closer) is all of O, so the other tile's copy has no pixel outside
  S. The **seam IoU** of two same-class detections of different, overlapping tiles measures exactly that:

      inter = |a n b|                                   (common pixels can only lie in S)
      union = |a n S| + |b n S| - inter + [b whole] |a \ S| + [a whole] |b \ S|
      seam IoU = inter / union

  i.e. the IoU of the two tiles' claims where they can be checked: inside S always; outside S only a
  whole copy knows that the object ends, so the other copy's pixels there count against. Two whole copies:
  the ordinary IoU; two cut copies (an object larger than the overlap): the IoU inside S. They are one
  object when seam IoU > ``threshold`` (``INPUT.TILE.MERGE_THRESHOLD``). Detections are visited whole first,
  then by score; a kept one removes the later ones it is one object with (greedy, exact). Detections of
  one tile are never merged here (the tile's own NMS saw them together).

  What it guarantees (tested): copies of one object have seam IoU 1, wherever the tiles fall; every copy
  is one object with every whole copy, so for objects smaller than the overlap (less twice that margin)
  one whole copy stays and the output does not depend on the grid. A distinct small object s nested in (or overlapping) a large
  one L of the same class survives: with s whole, seam IoU <= |s| / |L|; with s cut by its tile border,
  seam IoU <= |s n S| / |L n S|. So only a cut s that covers more than ``threshold`` of what L shows
  inside the shared window can be merged: there what the two tiles show of s and of L nearly coincide,
  and no rule on these masks can tell a nested object from a cut copy.
- **Cost** (``cross_tile_counts``): one step per pair of overlapping tiles (found by ``candidate_pairs``:
  grid buckets, no T x T or K x K array), with the detections whose boxes reach the two tiles' common
  window; pixels are counted there by one matrix product (many or large masks) or by gathering each
  box-overlapping same-class pair (few small masks), whichever is cheaper. Masks are kept cut to their
  boxes (``cropped_masks.CroppedMasks``), so time and memory follow the image area.
"""
import math
from typing import List, Sequence, Tuple

import torch

from ..utils.errors import WSSISInputError
from .cropped_masks import CroppedMasks, ragged_arange

__all__ = [
    "overlap_pixels",
    "check_tile_settings",
    "tile_boxes",
    "inner_border_distances",
    "best_tiles",
    "border_margins",
    "greedy_keep",
    "greedy_keep_sparse",
    "merge_order",
    "candidate_pairs",
    "cross_tile_counts",
    "seam_iou",
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


def greedy_keep_sparse(num: int, later: torch.Tensor, earlier: torch.Tensor) -> torch.Tensor:
    """Exact greedy suppression over a sparse graph, vectorised.

    Visiting items 0..num-1 in index order, an item is kept unless an earlier *kept* item suppresses it:
    the unique solution of keep[i] = not any(keep[j] for the edges (i, j)). It is found by iterating the
    equation from all-kept, one pass over the E edges per iteration, stopping at the fixed point after
    (suppression chain depth + 1) iterations, usually 2-3, never more than num + 1.

    Args:
        num: number of items.
        later, earlier: (E,) long, edge e says item earlier[e] (< later[e]) would suppress item later[e].

    Returns:
        (num,) bool, True for kept items.
    """
    keep = torch.ones(num, dtype=torch.bool, device=later.device)
    for _ in range(num + 1):
        suppressed = torch.zeros_like(keep)
        suppressed[later[keep[earlier]]] = True
        if torch.equal(~suppressed, keep):
            break
        keep = ~suppressed
    return keep


def greedy_keep(suppresses: torch.Tensor) -> torch.Tensor:
    """``greedy_keep_sparse`` of a dense matrix.

    Args:
        suppresses: (K, K) bool, [i, j] True when item j would suppress item i (only j < i is used).

    Returns:
        (K,) bool, True for kept items.
    """
    later, earlier = torch.nonzero(torch.tril(suppresses, diagonal=-1), as_tuple=True)
    return greedy_keep_sparse(suppresses.shape[0], later, earlier)


def merge_order(whole: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Visiting order of the cross-tile merge: whole detections first, then by score.

    Args:
        whole: (K,) bool, the detection stays clear of its tile's inner borders (``border_margins``);
        scores: (K,).

    Returns:
        (K,) long permutation.
    """
    by_score = torch.sort(scores, descending=True, stable=True).indices
    cut = (~whole[by_score]).to(torch.int8)
    return by_score[torch.sort(cut, stable=True).indices]


def candidate_pairs(boxes: torch.Tensor, cell: int = 0) -> torch.Tensor:
    """Every pair of boxes that overlap (positive common area), without a K x K array.

    Each box is put in the grid cells (of ``cell`` px) it covers; pairs are formed inside a cell and kept
    once, in the cell holding the top-left corner of their intersection. Cost: the cells covered plus the
    pairs that share a cell.

    Args:
        boxes: (K, 4) XYXY image pixels (x1 / y1 exclusive); empty boxes pair with nothing.
        cell: bucket side in pixels; 0 = twice the median box side (at least 8).

    Returns:
        (P, 2) long (i, j), i < j.
    """
    device = boxes.device
    b = boxes.to(torch.float32)
    valid = torch.nonzero((b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])).squeeze(1)
    if len(valid) < 2:
        return torch.zeros((0, 2), dtype=torch.long, device=device)
    vb = b[valid]
    if cell <= 0:
        side = torch.maximum(vb[:, 2] - vb[:, 0], vb[:, 3] - vb[:, 1])
        cell = max(8, int(math.ceil(2 * float(side.median()))))
    lo = torch.floor(vb[:, :2] / cell).to(torch.long)  # first cell (cx, cy)
    hi = torch.floor((vb[:, 2:] - 1e-3) / cell).to(torch.long)  # last cell, x1 / y1 exclusive
    span = hi - lo + 1
    owner, local = ragged_arange(span[:, 0] * span[:, 1])
    cx = lo[owner, 0] + local % span[owner, 0]
    cy = lo[owner, 1] + local // span[owner, 0]
    ncols = int(hi[:, 0].max()) + 1
    cell_id = cy * ncols + cx
    cell_id, order = torch.sort(cell_id, stable=True)
    member = owner[order]
    # each element pairs with the later elements of its cell
    pos = torch.arange(len(cell_id), device=device)
    _, counts = torch.unique_consecutive(cell_id, return_counts=True)
    cell_end = torch.repeat_interleave(torch.cumsum(counts, 0), counts)
    first, k = ragged_arange(cell_end - pos - 1)
    second = first + 1 + k
    i, j, cid = member[pos[first]], member[second], cell_id[first]
    x0 = torch.maximum(vb[i, 0], vb[j, 0])
    y0 = torch.maximum(vb[i, 1], vb[j, 1])
    overlap = (x0 < torch.minimum(vb[i, 2], vb[j, 2])) & (y0 < torch.minimum(vb[i, 3], vb[j, 3]))
    home = torch.floor(y0 / cell).to(torch.long) * ncols + torch.floor(x0 / cell).to(torch.long)
    sel = overlap & (home == cid)
    i, j = valid[i[sel]], valid[j[sel]]
    return torch.stack([torch.minimum(i, j), torch.maximum(i, j)], dim=1)


def seam_iou(inter: torch.Tensor, in_a: torch.Tensor, in_b: torch.Tensor, area_a: torch.Tensor,
             area_b: torch.Tensor, whole_a: torch.Tensor, whole_b: torch.Tensor) -> torch.Tensor:
    """Seam IoU of detection pairs (a, b) from different tiles (module docstring, "Cross-tile duplicates").

    Args (all (P,)):
        inter: |a n b| pixels; in_a, in_b: |a n S|, |b n S| (S: the two tiles' common window);
        area_a, area_b: |a|, |b|; whole_a, whole_b: bool, the detection is whole in its tile.

    Returns:
        (P,) float in [0, 1].
    """
    union = in_a + in_b - inter + whole_b * (area_a - in_a) + whole_a * (area_b - in_b)
    return inter.to(torch.float32) / union.clamp(min=1).to(torch.float32)


# The matrix product over a window costs about this many times less per pixel pair than the gathers of
# ``CroppedMasks.and_count`` (measured on CPU, order of magnitude); it decides which one a window uses.
_MATMUL_SPEEDUP = 16


def cross_tile_counts(masks: CroppedMasks, tile_of: torch.Tensor, tiles: torch.Tensor, classes: torch.Tensor,
                      method: str = "auto") -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixel counts of the pairs that can be one object: same class, two overlapping tiles, a common pixel.

    One step per pair of overlapping tiles (``candidate_pairs`` of the tiles: about 4 per tile, never all
    tile pairs), holding only the detections whose boxes reach the two tiles' common window S; among them
    only box-overlapping same-class pairs count. Their pixels in S are counted either by one matrix product
    over S (many or large masks) or by gathering each pair's box intersection (few small masks), whichever
    is cheaper; memory is bounded by one window.

    Args:
        masks: K detections in image pixels; tile_of: (K,) long their tiles; tiles: (T, 4) long;
        classes: (K,) long; method: "auto", or "matmul" / "gather" for every window (tests).

    Returns:
        pairs (P, 2) long (a, b) detection indices, and (P,) long inter |a n b|, in_a |a n S|, in_b |b n S|.
    """
    device = masks.device
    boxes = masks.boxes
    by_tile = torch.sort(tile_of, stable=True).indices
    starts = torch.cumsum(torch.bincount(tile_of, minlength=len(tiles)), 0).tolist()
    starts = [0] + starts
    found, gathered = [], []
    for ta, tb in candidate_pairs(tiles).tolist():
        win = torch.cat([torch.maximum(tiles[ta, :2], tiles[tb, :2]), torch.minimum(tiles[ta, 2:], tiles[tb, 2:])])
        da, db = (_reaching(by_tile[starts[t]:starts[t + 1]], boxes, win) for t in (ta, tb))
        if not len(da) or not len(db):
            continue
        ba, bb = boxes[da][:, None], boxes[db][None, :]
        lo = torch.maximum(torch.maximum(ba[..., :2], bb[..., :2]), win[:2])
        hi = torch.minimum(torch.minimum(ba[..., 2:], bb[..., 2:]), win[2:])
        rect = (hi - lo).clamp(min=0).prod(dim=-1)  # (na, nb) common box area inside S
        cand = (rect > 0) & (classes[da][:, None] == classes[db][None, :])
        if not bool(cand.any()):
            continue
        ra, rb = cand.any(dim=1), cand.any(dim=0)
        da, db, cand, rect = da[ra], db[rb], cand[ra][:, rb], rect[ra][:, rb]
        size = int((win[2:] - win[:2]).prod())
        matmul_cost = (len(da) + len(db)) * size + len(da) * len(db) * size / _MATMUL_SPEEDUP
        if method == "matmul" or (method == "auto" and matmul_cost < 3 * int(rect[cand].sum())):
            wa = masks.window(da, win.tolist()).flatten(1).to(torch.float32)
            wb = masks.window(db, win.tolist()).flatten(1).to(torch.float32)
            inter = (wa @ wb.t()).round().to(torch.long)
            i, j = torch.nonzero(cand & (inter > 0), as_tuple=True)
            found.append((torch.stack([da[i], db[j]], 1), inter[i, j], wa.sum(1).to(torch.long)[i],
                          wb.sum(1).to(torch.long)[j]))
        else:
            i, j = torch.nonzero(cand, as_tuple=True)
            gathered.append(torch.stack([da[i], db[j]], 1))
    if gathered:
        pairs = torch.cat(gathered)
        a, b = pairs[:, 0], pairs[:, 1]
        ta, tb = tiles[tile_of[a]], tiles[tile_of[b]]
        win = torch.cat([torch.maximum(ta[:, :2], tb[:, :2]), torch.minimum(ta[:, 2:], tb[:, 2:])], 1)
        found.append((pairs, masks.and_count(a, b, win), masks.count_in(a, win), masks.count_in(b, win)))
    if not found:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return empty.reshape(0, 2), empty, empty, empty
    return tuple(torch.cat(parts) for parts in zip(*found))


def _reaching(ids: torch.Tensor, boxes: torch.Tensor, win: torch.Tensor) -> torch.Tensor:
    """The detections ``ids`` whose boxes overlap the rectangle ``win``."""
    b = boxes[ids]
    return ids[(b[:, 0] < win[2]) & (b[:, 2] > win[0]) & (b[:, 1] < win[3]) & (b[:, 3] > win[1])]
