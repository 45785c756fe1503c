"""Point-guided selection of SOLOv2 grid-cell masks: PointWSSIS pseudo-labels (METHOD.md section 3).

Pure tensor functions (no ``nn.Module``, no config), one image at a time. Shape shorthand:

    M       points of the image
    L       pyramid levels of the instance branch (5 in SOLOv2)
    S_l     grid size of level l (the level is cut into S_l x S_l cells)
    C       foreground classes (contiguous index in [0, C))
    E       kernel length = mask-feature channels
    Hf, Wf  mask-feature size, 1/4 of the padded input (H, W)
    P       Hf * Wf
    K       kept pseudo-labels after post-processing

Coordinates: points are (x, y) in padded-input pixels, detectron2's continuous convention (pixel (i, j)
covers [j, j + 1) x [i, i + 1)). The cell of a point on level l is always
``grid.points_to_cells(points, input_hw, S_l)``, so a point on the right/bottom border (x = W) or beyond
it is clamped into the last row/column. Cells are flattened row-major (``grid.cells_to_index``).

The mask of cell (r, c) on level l is ``sigmoid(sum_e kernels[l][e, r, c] * mask_feats[e])``, (Hf, Wf).

Rules (each one is tested in ``tests/test_point_filter.py``):

- **Candidates.** Every point is tried on every level (``mode="adaptive"``): M x L candidates. The
  score of a candidate is ``sigmoid(class-c logit at the cell) * maskness``, maskness = mean of the
  mask probabilities over the pixels whose probability is > ``mask_thr`` (0 when there are none).
- **Empty masks.** A candidate whose area (pixels > ``mask_thr`` at 1/4 resolution, over the whole
  padded feature map) is <= its level's stride is *empty*: SOLOv2's inference area filter, applied
  *before* selection so that an empty or tiny mask can never win. Its selection score is -inf.
- **Ties.** Equal scores go to the finer (lower-index) level.
- **No point, no mask.** A point whose chosen candidate is empty (adaptive: all of its levels are empty;
  fixed/oracle: the allowed level(s) are empty) is not valid: level -1, cell (-1, -1), score 0, an
  all-zero mask. There is no score threshold: the point itself is the evidence of an instance.
- **Same-cell points.** Every point keeps its own output row. Two points of one class that fall into
  the same cell of the chosen level get the same mask and score, duplicated per point; nothing is
  merged (the published code merged them and lost a point). ``point_mask_nms`` never lets one point
  suppress another point of the same cell.
- **fixed** mode: one given level for every point (still the point's own cell on that level).
- **oracle** mode: the allowed levels are those whose scale range (inclusive bounds, in input pixels)
  contains the true size sqrt(w * h); if none does, the levels whose range is nearest (absolute
  distance to the range). Among the allowed levels the highest score wins (ties: finer). Overlapping
  ranges thus use the score, like adaptive mode restricted to the plausible levels.
"""
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from .grid import cells_to_index, points_to_cells
from .postprocess import masks_to_output

__all__ = [
    "PointMaskSelection",
    "PointPseudoLabels",
    "select_point_masks",
    "oracle_allowed_levels",
    "point_mask_nms",
    "postprocess_point_masks",
]

_NEG_INF = float("-inf")


class PointMaskSelection(NamedTuple):
    """The chosen grid cell of every point (one row per point, in the input order).

    level: (M,) long, chosen level, -1 where not valid.
    cell: (M, 2) long, (row, col) of the chosen cell on that level, (-1, -1) where not valid.
    score: (M,) float, sigmoid(class logit) * maskness of the chosen cell, 0 where not valid.
    mask_prob: (M, Hf, Wf) float, the chosen cell's soft mask at 1/4 of the padded input, 0 where not
        valid.
    valid: (M,) bool, False when the point gets no mask.
    level_scores: (M, L) float, score of every candidate level, -inf for empty candidates, NaN for
        candidates not evaluated (pruned: they cannot win; see ``select_point_masks(prune=...)``)
        (diagnostics, e.g. how often adaptive selection disagrees with the oracle).
    """

    level: torch.Tensor
    cell: torch.Tensor
    score: torch.Tensor
    mask_prob: torch.Tensor
    valid: torch.Tensor
    level_scores: torch.Tensor


class PointPseudoLabels(NamedTuple):
    """Post-processed pseudo-labels of one image, ordered by point index.

    indices: (K,) long, row of each pseudo-label in the ``PointMaskSelection`` (ascending).
    masks: (K, out_h, out_w) bool, binary masks at the output resolution.
    scores: (K,) float.
    classes: (K,) long, contiguous class index.
    levels: (K,) long, pyramid level each mask came from.
    """

    indices: torch.Tensor
    masks: torch.Tensor
    scores: torch.Tensor
    classes: torch.Tensor
    levels: torch.Tensor


# --------------------------------------------------------------------------------------- level choice
def _argmax_finest(scores: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Best level per row with ties to the lowest index.

    Args:
        scores: (M, L) float, -inf for candidates that may not be chosen.

    Returns:
        level: (M,) long; valid: (M,) bool, False where the whole row is -inf.
    """
    num_levels = scores.shape[1]
    best = scores.max(dim=1, keepdim=True).values
    index = torch.arange(num_levels, device=scores.device).expand_as(scores)
    level = torch.where(scores == best, index, num_levels).min(dim=1).values
    valid = best.squeeze(1) > _NEG_INF
    return level, valid


def _levels_adaptive(num_points: int, num_levels: int, device, **_) -> torch.Tensor:
    return torch.ones(num_points, num_levels, dtype=torch.bool, device=device)


def _levels_fixed(num_points: int, num_levels: int, device, *, level: Optional[int] = None, **_) -> torch.Tensor:
    if level is None or not -num_levels <= int(level) < num_levels:
        raise ValueError(f"mode='fixed' needs level in [0, {num_levels}), got {level!r}")
    allowed = torch.zeros(num_points, num_levels, dtype=torch.bool, device=device)
    allowed[:, int(level) % num_levels] = True
    return allowed


def oracle_allowed_levels(gt_sizes: torch.Tensor, scale_ranges: Sequence[Sequence[float]]) -> torch.Tensor:
    """Levels the oracle may pick for each instance size.

    Args:
        gt_sizes: (M,) float, sqrt(w * h) of each true box in input pixels.
        scale_ranges: L pairs (lo, hi) in input pixels, inclusive.

    Returns:
        (M, L) bool: the levels whose range contains the size, or, if none does, the levels whose range is
        nearest (distance max(lo - size, size - hi, 0)).
    """
    ranges = torch.as_tensor(scale_ranges, dtype=torch.float64, device=gt_sizes.device).reshape(-1, 2)
    size = gt_sizes.to(torch.float64)[:, None]
    dist = (ranges[:, 0] - size).clamp(min=0) + (size - ranges[:, 1]).clamp(min=0)
    return dist == dist.min(dim=1, keepdim=True).values


def _levels_oracle(
    num_points: int, num_levels: int, device, *, gt_sizes: Optional[torch.Tensor] = None, scale_ranges=None, **_
) -> torch.Tensor:
    if gt_sizes is None or scale_ranges is None:
        raise ValueError("mode='oracle' needs gt_sizes and scale_ranges")
    if len(scale_ranges) != num_levels or tuple(gt_sizes.shape) != (num_points,):
        raise ValueError("mode='oracle': need one scale range per level and one gt size per point")
    return oracle_allowed_levels(gt_sizes.to(device), scale_ranges)


# A mode says which levels each point may take: (M, L) bool. The highest-scoring allowed candidate wins
# (ties: finer level); a point whose allowed candidates are all empty gets no mask.
LEVEL_CANDIDATES: Dict[str, Callable[..., torch.Tensor]] = {
    "adaptive": _levels_adaptive,
    "fixed": _levels_fixed,
    "oracle": _levels_oracle,
}


# ------------------------------------------------------------------------------------------ selection
def _mask_stats(
    kernel_rows: torch.Tensor, feats: torch.Tensor, mask_thr: float, max_chunk_pixels: int
) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """Area and maskness of the masks of some cells, chunked over cells.

    Args:
        kernel_rows: (U, E) kernels of U cells.
        feats: (E, P) flattened mask features.

    Returns:
        area: (U,) long, pixels > mask_thr; maskness: (U,) float, mean probability over those pixels
        (0 if none); probs: (U, P) the soft masks when they fit in one chunk, else None.
    """
    num, pixels = kernel_rows.shape[0], feats.shape[1]
    chunk = max(1, int(max_chunk_pixels) // max(pixels, 1))
    areas, masksums, probs = [], [], None
    keep = num <= chunk  # one chunk: its soft masks are returned, so threshold a copy
    for start in range(0, num, chunk):
        prob = torch.sigmoid_(kernel_rows[start : start + chunk] @ feats)  # (u, P): one matmul per chunk
        fg_prob = F.threshold(prob, mask_thr, 0.0, inplace=not keep)  # prob where prob > mask_thr, else 0
        # mask_thr >= 0, so the kept values are > 0: the area is their count (no bool -> long copy).
        areas.append(torch.count_nonzero(fg_prob, dim=1))
        masksums.append(fg_prob.sum(dim=1))
        if keep:
            probs = prob
    if not areas:
        return feats.new_zeros(0, dtype=torch.long), feats.new_zeros(0), feats.new_zeros(0, pixels)
    area, masksum = torch.cat(areas), torch.cat(masksums)
    return area, masksum / area.clamp(min=1).to(masksum.dtype), probs


def _bounded_level_scores(
    cls_prob: torch.Tensor,
    allowed: torch.Tensor,
    inverse: torch.Tensor,
    kernel_rows: torch.Tensor,
    feats: torch.Tensor,
    min_area: torch.Tensor,
    mask_thr: float,
    max_chunk_pixels: int,
) -> Tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]:
    """Candidate scores, evaluating only candidates that can still win (branch and bound).

    Round r evaluates, for every point, its allowed level of r-th highest class probability, unless that
    probability is below the best score the point already has (score <= class probability, since
    maskness <= 1). At most L rounds, each one batched matmul over the distinct cells not evaluated in an
    earlier round (a cell shared by several points is computed once).

    Args:
        cls_prob: (M, L) class probability of each point's cell on each level.
        allowed: (M, L) bool, levels the mode lets each point take.
        inverse: (M, L) long, index of each candidate's cell in ``kernel_rows``.
        kernel_rows: (U, E) kernels of the distinct candidate cells.
        feats: (E, P) flattened mask features.
        min_area: (L,) a mask with area <= this (pixels at 1/4 resolution) is empty.

    Returns:
        scores: (M, L) sigmoid(logit) x maskness, -inf for empty masks, NaN where not evaluated.
        cache: (V, P) soft masks of evaluated cells kept within ``max_chunk_pixels`` (or None);
        slot: (U,) long, row of each cell in ``cache``, -1 if not cached.
    """
    num_points, num_levels = cls_prob.shape
    num_cells, pixels = kernel_rows.shape[0], feats.shape[1]
    device = cls_prob.device
    scores = torch.full_like(cls_prob, float("nan"))
    best = torch.full((num_points,), _NEG_INF, dtype=cls_prob.dtype, device=device)
    area_u = torch.full((num_cells,), -1, dtype=torch.long, device=device)  # -1: not evaluated yet
    maskness_u = cls_prob.new_zeros(num_cells)
    slot = torch.full((num_cells,), -1, dtype=torch.long, device=device)
    cache, cached_rows, cache_budget = [], 0, max_chunk_pixels // max(pixels, 1)
    order = cls_prob.masked_fill(~allowed, -1.0).argsort(dim=1, descending=True, stable=True)
    rows = torch.arange(num_points, device=device)
    for rank in range(num_levels):
        lvl = order[:, rank]
        prob = cls_prob[rows, lvl]
        todo = (allowed[rows, lvl] & (prob >= best)).nonzero(as_tuple=True)[0]
        if todo.numel() == 0:
            break
        lvl = lvl[todo]
        cand = inverse[todo, lvl]
        new = torch.unique(cand[area_u[cand] < 0])
        if new.numel():
            area, maskness, probs = _mask_stats(kernel_rows[new], feats, mask_thr, max_chunk_pixels)
            area_u[new], maskness_u[new] = area, maskness
            if probs is not None and cached_rows + new.numel() <= cache_budget:
                slot[new] = cached_rows + torch.arange(new.numel(), device=device)
                cache.append(probs)
                cached_rows += new.numel()
        score = (prob[todo] * maskness_u[cand]).masked_fill(area_u[cand] <= min_area[lvl], _NEG_INF)
        scores[todo, lvl] = score
        best[todo] = torch.maximum(best[todo], score)
    return scores, (torch.cat(cache) if cache else None), slot


def select_point_masks(
    cate_logits: Sequence[torch.Tensor],
    kernels: Sequence[torch.Tensor],
    mask_feats: torch.Tensor,
    points: torch.Tensor,
    classes: torch.Tensor,
    input_hw: Tuple[int, int],
    strides: Sequence[int],
    *,
    mode: str = "adaptive",
    level: Optional[int] = None,
    gt_sizes: Optional[torch.Tensor] = None,
    scale_ranges: Optional[Sequence[Sequence[float]]] = None,
    mask_thr: float = 0.5,
    max_chunk_pixels: int = 1 << 25,
    prune: bool = True,
) -> PointMaskSelection:
    """Pick one SOLOv2 grid cell (level + cell) and its soft mask for every point of one image.

    Batched: the M x L candidate cells are gathered at once, de-duplicated (points sharing a cell share
    the computation, not the output row), and their masks computed with one matmul per chunk of at most
    ``max_chunk_pixels`` mask pixels. Only the L levels are looped over, never the points. See the module
    docstring for the rules (empty masks, ties, same-cell points, oracle ranges).

    Args:
        cate_logits: L tensors (C, S_l, S_l), class logits of every cell (sigmoid, not softmax).
        kernels: L tensors (E, S_l, S_l), dynamic 1x1 kernel of every cell.
        mask_feats: (E, Hf, Wf) mask features at 1/4 of the padded input.
        points: (M, 2) float, (x, y) in padded-input pixels (continuous convention).
        classes: (M,) long, contiguous class index in [0, C).
        input_hw: (H, W) of the padded input the grids are laid over.
        strides: L ints, stride of each level; a mask with area <= stride (at 1/4 res) is empty.
        mode: "adaptive" (best score over all levels), "fixed" (``level``) or "oracle" (``gt_sizes`` and
            ``scale_ranges``).
        level: the level index of mode "fixed".
        gt_sizes: (M,) float, sqrt(w * h) of each true box in input pixels, for mode "oracle".
        scale_ranges: L pairs (lo, hi) in input pixels, for mode "oracle".
        mask_thr: mask probability threshold.
        max_chunk_pixels: memory budget: at most this many mask pixels are held at once (the chosen masks
            are kept directly when all candidates fit in one chunk, else recomputed).
        prune: skip candidates that cannot win: a score is sigmoid(logit) x maskness <= sigmoid(logit),
            so a candidate whose class probability is below the best score already found for its point
            is never evaluated (candidates are visited in decreasing class probability). The choice,
            score and mask are exactly those of ``prune=False``; only ``level_scores`` differs (NaN for
            candidates not evaluated). ``prune=False`` evaluates every candidate of every level.

    Returns:
        PointMaskSelection, one row per point in the input order.
    """
    if mode not in LEVEL_CANDIDATES:
        raise ValueError(f"unknown mode {mode!r}, expected one of {sorted(LEVEL_CANDIDATES)}")
    if not 0.0 <= mask_thr < 1.0:
        raise ValueError(f"mask_thr is a probability threshold in [0, 1), got {mask_thr}")
    num_levels = len(cate_logits)
    if num_levels == 0 or len(kernels) != num_levels or len(strides) != num_levels:
        raise ValueError("cate_logits, kernels and strides need one entry per level (at least one)")
    grids: List[int] = []
    for cate, kern in zip(cate_logits, kernels):
        s = cate.shape[-1]
        if cate.shape[-2] != s or tuple(kern.shape[-2:]) != (s, s):
            raise ValueError(f"level grids must be square and equal in both heads: {cate.shape}, {kern.shape}")
        grids.append(int(s))
    num_classes = cate_logits[0].shape[0]
    num_embed, feat_h, feat_w = mask_feats.shape
    device, dtype = mask_feats.device, mask_feats.dtype
    num_points = points.shape[0]
    points = points.to(device)
    classes = classes.to(device=device, dtype=torch.long)
    if classes.shape != (num_points,):
        raise ValueError(f"classes must be ({num_points},), got {tuple(classes.shape)}")
    if num_points and (int(classes.min()) < 0 or int(classes.max()) >= num_classes):
        raise ValueError(f"classes must lie in [0, {num_classes})")

    # Per level: the point's cell (row-major index), its class logit, and the level's distinct cells.
    # Points sharing a cell share the mask computation (their output rows stay separate).
    cells, cls_logit, kernel_rows, inverse = [], [], [], []
    num_unique = 0
    for cate, kern, s in zip(cate_logits, kernels, grids):
        cell = points_to_cells(points, input_hw, s)  # (M, 2)
        index = cells_to_index(cell, s)  # (M,)
        uniq, inv = torch.unique(index, return_inverse=True)
        cells.append(cell)
        cls_logit.append(cate.reshape(num_classes, -1)[classes, index])  # (M,)
        kernel_rows.append(kern.reshape(num_embed, -1)[:, uniq].t())  # (U_l, E)
        inverse.append(inv + num_unique)
        num_unique += uniq.numel()
    cells = torch.stack(cells, dim=1)  # (M, L, 2)
    inverse = torch.stack(inverse, dim=1)  # (M, L) index into the U = sum U_l candidate masks
    kernel_rows = torch.cat(kernel_rows).to(dtype)  # (U, E)

    feats = mask_feats.reshape(num_embed, -1)
    cls_prob = torch.sigmoid(torch.stack(cls_logit, dim=1)).to(feats.dtype)  # (M, L)
    min_area = torch.as_tensor(list(strides), device=device)
    allowed = LEVEL_CANDIDATES[mode](
        num_points, num_levels, device, level=level, gt_sizes=gt_sizes, scale_ranges=scale_ranges
    )
    if prune:
        level_scores, cache, slot = _bounded_level_scores(
            cls_prob, allowed, inverse, kernel_rows, feats, min_area, mask_thr, max_chunk_pixels
        )
    else:
        area, maskness, cache = _mask_stats(kernel_rows, feats, mask_thr, max_chunk_pixels)  # one matmul/chunk
        level_scores = (cls_prob * maskness[inverse]).masked_fill(area[inverse] <= min_area, _NEG_INF)
        slot = (torch.arange(kernel_rows.shape[0], device=device) if cache is not None
                else torch.full((kernel_rows.shape[0],), -1, dtype=torch.long, device=device))
    evaluated = level_scores.masked_fill(torch.isnan(level_scores), _NEG_INF)
    chosen, valid = _argmax_finest(evaluated.masked_fill(~allowed, _NEG_INF))
    rows = torch.arange(num_points, device=device)
    chosen_u = inverse[rows, chosen]  # (M,) index into the U candidate masks

    # Soft masks of the chosen cells: from the cache, recomputed for those not in it (memory budget).
    chosen_slot = slot[chosen_u]
    hit = valid & (chosen_slot >= 0)
    if num_points and bool(hit.all()):  # the usual case: one gather
        mask_prob = cache[chosen_slot]
    else:
        mask_prob = feats.new_zeros(num_points, feat_h * feat_w)
        if bool(hit.any()):
            mask_prob[hit] = cache[chosen_slot[hit]]
        miss = valid & ~hit
        if bool(miss.any()):
            u2, inv2 = torch.unique(chosen_u[miss], return_inverse=True)
            mask_prob[miss] = torch.sigmoid(kernel_rows[u2] @ feats)[inv2]
    score = torch.where(valid, level_scores[rows, chosen], level_scores.new_zeros(()))
    return PointMaskSelection(
        level=torch.where(valid, chosen, -1),
        cell=torch.where(valid[:, None], cells[rows, chosen], -1),
        score=score,
        mask_prob=mask_prob.reshape(num_points, feat_h, feat_w),
        valid=valid,
        level_scores=level_scores,
    )


# ----------------------------------------------------------------------------------- post-processing
def point_mask_nms(
    masks: torch.Tensor,
    scores: torch.Tensor,
    classes: torch.Tensor,
    iou_threshold: float = 0.5,
    exempt: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Exact greedy class-aware mask NMS, vectorised.

    Greedy NMS (visit masks by decreasing score; a kept mask suppresses the later ones of its class with
    IoU > ``iou_threshold``) is the unique solution of keep[i] = not any(keep[j] and suppresses(j, i) for
    j before i). It is found by iterating that equation from all-kept: each iteration is one (K, K)
    tensor op and the loop stops at the fixed point, after (suppression chain depth + 1) iterations,
    usually 2-3, never more than K + 1. Ties in score keep the lower index first.

    Args:
        masks: (K, ...) bool or {0, 1} float binary masks (any spatial size, flattened).
        scores: (K,) float.
        classes: (K,) long.
        iou_threshold: suppress when IoU > this.
        exempt: (K, K) bool, pairs that never suppress each other (e.g. two points of one cell).

    Returns:
        (K,) bool, True for kept masks.
    """
    num = masks.shape[0]
    if num == 0:
        return torch.zeros(0, dtype=torch.bool, device=masks.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    m = masks.reshape(num, -1)[order].to(torch.float32)
    inter = m @ m.t()
    area = m.sum(dim=1)
    iou = inter / (area[:, None] + area[None, :] - inter).clamp(min=1)
    cls = classes[order]
    suppresses = (iou > iou_threshold) & (cls[:, None] == cls[None, :])  # (i, j): j may suppress i
    if exempt is not None:
        suppresses &= ~exempt[order][:, order]
    suppresses = torch.tril(suppresses, diagonal=-1)  # only earlier (higher-score) masks suppress
    keep = torch.ones(num, dtype=torch.bool, device=masks.device)
    for _ in range(num + 1):
        new_keep = ~(suppresses & keep[None, :]).any(dim=1)
        if torch.equal(new_keep, keep):
            break
        keep = new_keep
    out = torch.empty_like(keep)
    out[order] = keep
    return out


def postprocess_point_masks(
    selection: PointMaskSelection,
    classes: torch.Tensor,
    strides: Sequence[int],
    input_hw: Tuple[int, int],
    image_size: Tuple[int, int],
    output_size: Optional[Tuple[int, int]] = None,
    *,
    mask_thr: float = 0.5,
    nms_iou: Optional[float] = None,
    max_per_image: int = 100,
) -> PointPseudoLabels:
    """Turn chosen soft masks into binary pseudo-labels (METHOD.md section 3, post-processing).

    Steps: (1) drop invalid points and masks whose area (pixels > ``mask_thr`` at 1/4 res) is <= the
    chosen level's stride; (2) optionally class-aware mask NMS at IoU ``nms_iou`` on the 1/4-res binary
    masks, where two points of the same (level, cell) never suppress each other; (3) keep at most
    ``max_per_image`` by score (ties: lower point index); (4) upsample the soft masks bilinearly to the
    padded input (H, W) (x4), crop to the image size, resize bilinearly to ``output_size`` and threshold
    at ``mask_thr``.

    NMS is off by default: in point-guided mode every point is a distinct annotated instance, so NMS can
    only remove a labelled instance. It exists for ablations (the published post-processing used it).

    Args:
        selection: output of ``select_point_masks`` for M points.
        classes: (M,) long, class of each point.
        strides: L ints, stride of each level.
        input_hw: (H, W) of the padded input.
        image_size: (h, w) of the image inside the padded input (h <= H, w <= W).
        output_size: (out_h, out_w) of the returned masks, e.g. the original image size; default
            ``image_size``.
        mask_thr: threshold at 1/4 and at full resolution.
        nms_iou: IoU threshold of the NMS; None disables it.
        max_per_image: cap on the number of pseudo-labels (raise it for crowded images).

    Returns:
        PointPseudoLabels, ordered by point index.
    """
    prob = selection.mask_prob
    device = prob.device
    out_h, out_w = output_size if output_size is not None else image_size
    strides_t = torch.as_tensor(list(strides), device=device)
    binary = prob > mask_thr
    area = binary.flatten(1).sum(dim=1)
    keep = selection.valid & (area > strides_t[selection.level.clamp(min=0)])
    idx = torch.nonzero(keep).squeeze(1)
    classes = classes.to(device=device, dtype=torch.long)

    if nms_iou is not None and idx.numel() > 1:
        lv, cell = selection.level[idx], selection.cell[idx]
        same_cell = (lv[:, None] == lv[None, :]) & (cell[:, None] == cell[None, :]).all(dim=-1)
        idx = idx[point_mask_nms(binary[idx], selection.score[idx], classes[idx], nms_iou, exempt=same_cell)]

    if idx.numel() > max_per_image:
        top = torch.sort(selection.score[idx], descending=True, stable=True).indices[:max_per_image]
        idx = idx[top].sort().values

    masks = masks_to_output(prob[idx], tuple(image_size), (out_h, out_w), mask_thr)
    return PointPseudoLabels(
        indices=idx,
        masks=masks,
        scores=selection.score[idx],
        classes=classes[idx],
        levels=selection.level[idx],
    )


# ------------------------------------------------------------------------------------------ reference
def _reference_select_point_masks(
    cate_logits: Sequence[torch.Tensor],
    kernels: Sequence[torch.Tensor],
    mask_feats: torch.Tensor,
    points: torch.Tensor,
    classes: torch.Tensor,
    input_hw: Tuple[int, int],
    strides: Sequence[int],
    *,
    mode: str = "adaptive",
    level: Optional[int] = None,
    gt_sizes: Optional[torch.Tensor] = None,
    scale_ranges: Optional[Sequence[Sequence[float]]] = None,
    mask_thr: float = 0.5,
) -> PointMaskSelection:
    """Per-point, per-level loop with the same rules as ``select_point_masks`` (tests and benchmark only)."""
    num_levels = len(cate_logits)
    num_points = points.shape[0]
    feat_h, feat_w = mask_feats.shape[-2:]
    out_level = torch.full((num_points,), -1, dtype=torch.long)
    out_cell = torch.full((num_points, 2), -1, dtype=torch.long)
    out_score = torch.zeros(num_points, dtype=mask_feats.dtype)
    out_mask = torch.zeros(num_points, feat_h, feat_w, dtype=mask_feats.dtype)
    out_level_scores = torch.zeros(num_points, num_levels, dtype=mask_feats.dtype)
    for i in range(num_points):
        cls = int(classes[i])
        cand = []
        for l in range(num_levels):
            grid = cate_logits[l].shape[-1]
            r, c = (int(v) for v in points_to_cells(points[i : i + 1], input_hw, grid)[0])
            prob = torch.sigmoid(torch.einsum("e,ehw->hw", kernels[l][:, r, c], mask_feats))
            fg = prob > mask_thr
            area = int(fg.sum())
            maskness = float((prob * fg).sum()) / area if area > 0 else 0.0
            score = float(torch.sigmoid(cate_logits[l][cls, r, c])) * maskness
            cand.append((score if area > strides[l] else _NEG_INF, (r, c), prob))
            out_level_scores[i, l] = cand[-1][0]
        if mode == "adaptive":
            allowed = list(range(num_levels))
        elif mode == "fixed":
            allowed = [int(level) % num_levels]
        elif mode == "oracle":
            size = float(gt_sizes[i])
            dist = [max(lo - size, 0.0) + max(size - hi, 0.0) for lo, hi in scale_ranges]
            allowed = [l for l in range(num_levels) if dist[l] == min(dist)]
        else:
            raise ValueError(mode)
        best = None
        for l in allowed:  # strict ">" keeps the finer level on ties
            if cand[l][0] > _NEG_INF and (best is None or cand[l][0] > cand[best][0]):
                best = l
        if best is not None:
            out_level[i] = best
            out_cell[i] = torch.tensor(cand[best][1])
            out_score[i] = cand[best][0]
            out_mask[i] = cand[best][2]
    return PointMaskSelection(
        level=out_level,
        cell=out_cell,
        score=out_score,
        mask_prob=out_mask,
        valid=out_level >= 0,
        level_scores=out_level_scores,
    )
