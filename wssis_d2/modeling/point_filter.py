"""Point-guided selection of SOLOv2 grid-cell masks: PointWSSIS pseudo-labels (METHOD.md section 3).

Pure tensor functions (no ``nn.Module``, no config), one image at a time. ``select_point_masks`` is the
entry; its parts live beside it: ``level_choice`` (levels a mode allows, ties), ``candidate_bound`` (the
branch-and-bound candidate scoring), ``collisions`` (same-cell points), and ``point_postprocess`` turns
a selection into binary pseudo-labels (area filter, NMS, cap, resize). ``tests/reference_point_filter.py``
is a per-point loop with the same rules (tests and benchmarks). Shape shorthand:

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
  padded feature map) is <= its level's stride is *empty* (SOLOv2's inference area filter). With
  ``tiny_mask_rule="before"`` (default) it is applied *before* selection so that an empty or tiny mask
  can never win (selection score -inf); with ``"after"`` (published) the level is chosen among all
  candidates and ``postprocess_point_masks`` drops a tiny chosen mask.
- **Ties.** Equal scores go to the finer (lower-index) level.
- **No point, no mask.** A point whose allowed candidates are all empty is not valid: level -1, cell
  (-1, -1), score 0, an all-zero mask. There is no score threshold: the point itself is the evidence of
  an instance.
- **Same-cell points (collisions).** Every point keeps its own output row. When points choose one
  (level, cell), whatever their classes (a cell has one mask for every class), ``collision_rule``
  decides: "reassign" (default; the point nearest the cell centre keeps it, the others move to their
  best free level, ``assign_cells``; with none left they split the cell's mask, ``split_shared_masks``),
  "split", or "share" (the same whole mask for each: the published code's behaviour, one object seen
  twice). ``point_mask_nms`` never lets one point
  suppress another point of the same cell.
- **fixed** mode: one given level for every point (still the point's own cell on that level).
- **oracle_size** mode: exactly one level per point, from the true size sqrt(w * h) alone: the level
  whose scale range (half-open [lo, hi), in input pixels, as the training targets) contains it; where
  ranges overlap, the one whose centre sqrt(lo * hi) is nearest in log scale; where none contains it,
  the nearest range (``level_choice.oracle_size_levels``). The score never decides.
"""
from typing import List, NamedTuple, Optional, Sequence, Tuple

import torch

from .candidate_bound import bounded_level_scores, score_missing
from .collisions import COLLISION_RULES, assign_cells, cell_centre_distances, split_shared_masks
from .grid import cells_to_index, points_to_cells
from .level_choice import LEVEL_MODES, NEG_INF, allowed_levels, argmax_finest

__all__ = ["PointMaskSelection", "TINY_MASK_RULES", "select_point_masks"]

TINY_MASK_RULES = ("before", "after")


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
    collided: (M,) bool, points whose first-choice cell was taken by another point (collision rule).
    cross_class: (M,) bool, points whose first-choice cell was also the first choice of a point of another
        class (a subset of the points in a collision: counted apart, the published code missed them).
    shared: (M,) bool, points whose mask is their part of a cell mask split with other points.
    """

    level: torch.Tensor
    cell: torch.Tensor
    score: torch.Tensor
    mask_prob: torch.Tensor
    valid: torch.Tensor
    level_scores: torch.Tensor
    collided: Optional[torch.Tensor] = None
    shared: Optional[torch.Tensor] = None
    cross_class: Optional[torch.Tensor] = None


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
    collision_rule: str = "reassign",
    tiny_mask_rule: str = "before",
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
        mode: "adaptive" (best score over all levels), "fixed" (``level``) or "oracle_size" (``gt_sizes``
            and ``scale_ranges``).
        level: the level index of mode "fixed".
        gt_sizes: (M,) float, sqrt(w * h) of each true box in input pixels, for mode "oracle_size".
        scale_ranges: L pairs (lo, hi) in input pixels, for mode "oracle_size".
        mask_thr: mask probability threshold.
        max_chunk_pixels: memory budget: at most this many mask pixels are held at once (the chosen masks
            are kept directly when all candidates fit in one chunk, else recomputed).
        prune: skip candidates that cannot win: a score is sigmoid(logit) x maskness <= sigmoid(logit),
            so a candidate whose class probability is below the best score already found for its point
            is never evaluated (candidates are visited in decreasing class probability). The choice,
            score and mask are exactly those of ``prune=False``; only ``level_scores`` differs (NaN for
            candidates not evaluated). ``prune=False`` evaluates every candidate of every level.
        collision_rule: what happens when points (of any classes) choose the same (level, cell): "reassign"
            (the point nearest the cell centre keeps it, the others take their best remaining level whose
            cell no other point holds; with none left, "split"), "split" (they share the cell
            and split its mask: each pixel goes to the nearest of them), "share" (each gets the same
            whole mask: the published behaviour, the student sees one object twice).
        tiny_mask_rule: "before": a candidate whose mask area is <= its level's stride is excluded before
            the level is chosen, so a tiny mask never wins; "after" (published): the level is chosen
            among all candidates and a tiny chosen mask is dropped later (``postprocess_point_masks``).

    Returns:
        PointMaskSelection, one row per point in the input order.
    """
    if mode not in LEVEL_MODES:
        raise ValueError(f"unknown mode {mode!r}, expected one of {sorted(LEVEL_MODES)}")
    if collision_rule not in COLLISION_RULES:
        raise ValueError(f"unknown collision_rule {collision_rule!r}, expected one of {COLLISION_RULES}")
    if tiny_mask_rule not in TINY_MASK_RULES:
        raise ValueError(f"unknown tiny_mask_rule {tiny_mask_rule!r}, expected one of {TINY_MASK_RULES}")
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
    # Candidates with area <= min_area score -inf ("before"); -1 lets every candidate compete ("after").
    min_area = torch.as_tensor(list(strides), device=device)
    if tiny_mask_rule == "after":
        min_area = torch.full_like(min_area, -1)
    allowed = allowed_levels(
        mode, num_points, num_levels, device, level=level, gt_sizes=gt_sizes, scale_ranges=scale_ranges
    )
    # prune=False: the same rounds without the bound, over every level (all of level_scores filled in).
    level_scores, cache, slot = bounded_level_scores(
        cls_prob, allowed if prune else torch.ones_like(allowed), inverse, kernel_rows, feats, min_area,
        mask_thr, max_chunk_pixels, bound=prune,
    )
    evaluated = level_scores.masked_fill(torch.isnan(level_scores), NEG_INF)
    chosen, valid = argmax_finest(evaluated.masked_fill(~allowed, NEG_INF))
    rows = torch.arange(num_points, device=device)
    chosen_u = inverse[rows, chosen]  # (M,) index into the U candidate masks
    # (level, cell) id of every candidate: equal ids are the same cell mask, whatever the points' classes.
    keys = inverse
    collided = torch.zeros(num_points, dtype=torch.bool, device=device)
    shared = collided.clone()
    first_keys = keys[rows, chosen].masked_fill(~valid, -1)
    uniq_keys, group, counts = torch.unique(first_keys, return_inverse=True, return_counts=True)
    cross_class = valid & _mixed_groups(group, classes, len(uniq_keys))
    counts = counts[uniq_keys >= 0]
    uniq_keys = uniq_keys[uniq_keys >= 0]
    if bool((counts > 1).any()):  # points chose the same cell
        distances = cell_centre_distances(points.to(feats.dtype), cells, input_hw, grids)
        if collision_rule == "reassign":  # pruned alternatives of the colliding points need their scores
            members = valid & torch.isin(first_keys, uniq_keys[counts > 1])
            score_missing(level_scores, members[:, None] & allowed & torch.isnan(level_scores), cls_prob,
                           inverse, kernel_rows, feats, min_area, mask_thr, max_chunk_pixels)
        level, collided, shared = assign_cells(
            level_scores.masked_fill(~allowed, NEG_INF), keys, distances, valid,
            reassign=collision_rule == "reassign",
        )
        if collision_rule != "share":
            chosen = level.clamp(min=0)
            chosen_u = inverse[rows, chosen]
            final_keys = keys[rows, chosen]
            # A shared cell is split among its fallback points and the point that holds it.
            shared = valid & torch.isin(final_keys, final_keys[shared])
        else:
            shared = torch.zeros_like(shared)

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
    mask_prob = mask_prob.reshape(num_points, feat_h, feat_w)
    if bool(shared.any()):
        mask_prob[shared] = split_shared_masks(
            mask_prob[shared], points[shared].to(feats.dtype), keys[rows, chosen][shared], input_hw, mask_thr)
    score = torch.where(valid, level_scores[rows, chosen], level_scores.new_zeros(()))
    return PointMaskSelection(
        level=torch.where(valid, chosen, -1),
        cell=torch.where(valid[:, None], cells[rows, chosen], -1),
        score=score,
        mask_prob=mask_prob,
        valid=valid,
        level_scores=level_scores,
        collided=collided,
        shared=shared,
        cross_class=cross_class,
    )


def _mixed_groups(group: torch.Tensor, classes: torch.Tensor, num_groups: int) -> torch.Tensor:
    """(M,) bool: points whose group (``group`` (M,) long in [0, num_groups)) holds more than one class."""
    lo = classes.new_full((num_groups,), torch.iinfo(torch.long).max).scatter_reduce(0, group, classes, "amin")
    hi = classes.new_full((num_groups,), -1).scatter_reduce(0, group, classes, "amax")
    return (lo != hi)[group]

