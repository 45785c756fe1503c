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
  padded feature map) is <= its level's stride is *empty* (SOLOv2's inference area filter). With
  ``tiny_mask_rule="before"`` (default) it is applied *before* selection so that an empty or tiny mask
  can never win (selection score -inf); with ``"after"`` (published) the level is chosen among all
  candidates and ``postprocess_point_masks`` drops a tiny chosen mask.
- **Ties.** Equal scores go to the finer (lower-index) level.
- **No point, no mask.** A point whose allowed candidates are all empty is not valid: level -1, cell
  (-1, -1), score 0, an all-zero mask. There is no score threshold: the point itself is the evidence of
  an instance.
- **Same-cell points (collisions).** Every point keeps its own output row. When same-class points
  choose one (level, cell), ``collision_rule`` decides: "reassign" (default; the point nearest the cell
  centre keeps it, the others move to their best free level, ``assign_cells``; with none left they
  split the cell's mask, ``split_shared_masks``), "split", or "share" (the same whole mask for each:
  the published code's behaviour, one object seen twice). ``point_mask_nms`` never lets one point
  suppress another point of the same cell.
- **fixed** mode: one given level for every point (still the point's own cell on that level).
- **oracle** mode: the allowed levels are those whose scale range (half-open [lo, hi), in input pixels,
  as the training targets) contains the true size sqrt(w * h); if none does, the levels whose range is
  nearest (absolute distance to the range). Among the allowed levels the highest score wins (ties:
  finer). Overlapping ranges thus use the score, like adaptive mode restricted to the plausible levels.
"""
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch

from .grid import cells_to_index, points_to_cells
from .postprocess import mask_area_maskness, masks_to_output

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
    collided: (M,) bool, points whose first-choice cell was taken by a same-class point (collision rule).
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


class PointPseudoLabels(NamedTuple):
    """Post-processed pseudo-labels of one image, ordered by point index.

    indices: (K,) long, row of each pseudo-label in the ``PointMaskSelection`` (ascending).
    masks: (K, out_h, out_w) bool, binary masks at the output resolution.
    scores: (K,) float.
    classes: (K,) long, contiguous class index.
    levels: (K,) long, pyramid level each mask came from.
    num_capped: points dropped by ``max_per_image`` (0 without a cap).
    """

    indices: torch.Tensor
    masks: torch.Tensor
    scores: torch.Tensor
    classes: torch.Tensor
    levels: torch.Tensor
    num_capped: int = 0


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
        scale_ranges: L pairs (lo, hi) in input pixels, half-open [lo, hi) as in the training targets.

    Returns:
        (M, L) bool: the levels whose range contains the size, or, if none does, the levels whose range is
        nearest (distance max(lo - size, 0) + max(size - hi, 0)).
    """
    ranges = torch.as_tensor(scale_ranges, dtype=torch.float64, device=gt_sizes.device).reshape(-1, 2)
    size = gt_sizes.to(torch.float64)[:, None]
    inside = (size >= ranges[:, 0]) & (size < ranges[:, 1])  # half-open [lo, hi), as the training targets
    dist = (ranges[:, 0] - size).clamp(min=0) + (size - ranges[:, 1]).clamp(min=0)
    nearest = dist == dist.min(dim=1, keepdim=True).values
    return torch.where(inside.any(dim=1, keepdim=True), inside, nearest)


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
def _candidate_scores(cls_prob, maskness, area, min_area):
    """Selection score of candidates (any matching shapes): class probability x maskness, -inf where the
    mask area (pixels at 1/4 resolution) is <= ``min_area`` (the level stride; -1 lets every mask compete)."""
    return (cls_prob * maskness).masked_fill(area <= min_area, _NEG_INF)


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
            area, maskness, probs = mask_area_maskness(kernel_rows[new], feats, mask_thr, max_chunk_pixels)
            area_u[new], maskness_u[new] = area, maskness
            if probs is not None and cached_rows + new.numel() <= cache_budget:
                slot[new] = cached_rows + torch.arange(new.numel(), device=device)
                cache.append(probs)
                cached_rows += new.numel()
        score = _candidate_scores(prob[todo], maskness_u[cand], area_u[cand], min_area[lvl])
        scores[todo, lvl] = score
        best[todo] = torch.maximum(best[todo], score)
    return scores, (torch.cat(cache) if cache else None), slot


def _score_missing(level_scores, todo, cls_prob, inverse, kernel_rows, feats, min_area, mask_thr,
                   max_chunk_pixels) -> None:
    """Fill in place the (M, L) ``level_scores`` where ``todo`` (M, L) bool: candidates that the
    branch and bound skipped (NaN) but that are needed after all (alternatives of colliding points)."""
    if not bool(todo.any()):
        return
    cand = inverse[todo]
    new, slot = torch.unique(cand, return_inverse=True)
    area, maskness, _ = mask_area_maskness(kernel_rows[new], feats, mask_thr, max_chunk_pixels)
    lvl = torch.nonzero(todo)[:, 1]  # boolean indexing is row-major, as nonzero
    level_scores[todo] = _candidate_scores(cls_prob[todo], maskness[slot], area[slot], min_area[lvl])


COLLISION_RULES = ("reassign", "split", "share")
TINY_MASK_RULES = ("before", "after")


def cell_centre_distances(points: torch.Tensor, cells: torch.Tensor, input_hw: Tuple[int, int],
                          grids: Sequence[int]) -> torch.Tensor:
    """Squared distance of every point to the centre of its cell on every level.

    Args:
        points: (M, 2) (x, y) in padded-input pixels.
        cells: (M, L, 2) long (row, col) of each point's cell per level.
        input_hw: (H, W) of the padded input.
        grids: L grid sizes.

    Returns:
        (M, L) float: squared distance in input pixels to the centre ((c + 0.5) W / S, (r + 0.5) H / S).
    """
    h, w = input_hw
    size = torch.as_tensor(list(grids), dtype=points.dtype, device=points.device)
    centre_x = (cells[..., 1].to(points.dtype) + 0.5) * (w / size)
    centre_y = (cells[..., 0].to(points.dtype) + 0.5) * (h / size)
    return (points[:, None, 0] - centre_x) ** 2 + (points[:, None, 1] - centre_y) ** 2


def assign_cells(
    scores: torch.Tensor,
    keys: torch.Tensor,
    distances: torch.Tensor,
    valid: torch.Tensor,
    reassign: bool = True,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Give each point its own (level, cell): the collision rule of same-class points.

    Two points collide when they choose the same key (same class, level and cell). Rounds, batched over
    points (at most L rounds): every unresolved point proposes its best remaining level (highest score,
    ties to the finer level); among the points proposing one key, the one nearest the cell centre (ties:
    lower index) takes it, unless a point of an earlier round already holds it; the others lose that
    level and propose again (``reassign``) or stop (``reassign=False``). A point left without any free
    level falls back to its first choice and shares that cell with its holder (see ``split_shared_masks``).

    Args:
        scores: (M, L) float, -inf (or NaN) for candidates a point may not take.
        keys: (M, L) long, one id per (class, level, cell): equal ids collide.
        distances: (M, L) float, distance of the point to its cell centre on each level.
        valid: (M,) bool, points that have at least one candidate.
        reassign: move losers to their next best level; False: losers keep their first choice (split).

    Returns:
        level: (M,) long, the assigned level (first choice for fallback points), -1 where not valid;
        collided: (M,) bool, points that lost their first choice to another point;
        shared: (M,) bool, fallback points that share their first choice's cell with its holder.
    """
    num_points, num_levels = scores.shape
    device = scores.device
    avail = valid[:, None] & ~torch.isnan(scores) & (scores > _NEG_INF)
    level = torch.full((num_points,), -1, dtype=torch.long, device=device)
    first = level.clone()
    collided = torch.zeros(num_points, dtype=torch.bool, device=device)
    pending = valid.clone()
    held = keys.new_zeros(0)
    for rnd in range(num_levels if reassign else 1):
        idx = pending.nonzero(as_tuple=True)[0]
        if idx.numel() == 0:
            break
        lvl, ok = _argmax_finest(scores[idx].masked_fill(~avail[idx], _NEG_INF))
        idx, lvl = idx[ok], lvl[ok]
        if rnd == 0:
            first[idx] = lvl
        key, dist = keys[idx, lvl], distances[idx, lvl]
        # Order by (key, distance, index): the first of each key group is its nearest point.
        order = torch.sort(dist, stable=True).indices
        order = order[torch.sort(key[order], stable=True).indices]
        key_sorted = key[order]
        head = torch.ones_like(key_sorted, dtype=torch.bool)
        head[1:] = key_sorted[1:] != key_sorted[:-1]
        win = head & ~torch.isin(key_sorted, held)
        winners, losers = idx[order[win]], idx[order[~win]]
        level[winners] = lvl[order[win]]
        pending[winners] = False
        held = torch.cat([held, key_sorted[win]])
        avail[losers, lvl[order[~win]]] = False
        collided[losers] = True
    shared = pending & valid
    level[shared] = first[shared]
    return level, collided, shared


def split_shared_masks(
    mask_prob: torch.Tensor, points: torch.Tensor, keys: torch.Tensor, input_hw: Tuple[int, int]
) -> torch.Tensor:
    """Split each mask that several points share among them: a pixel goes to the nearest of those points.

    Args:
        mask_prob: (G, Hf, Wf) soft masks of G points (identical within a group).
        points: (G, 2) (x, y) in padded-input pixels.
        keys: (G,) long, group id (points with equal keys share one mask).
        input_hw: (H, W) of the padded input; pixel (i, j) of the 1/4-res mask has its centre at
            ((j + 0.5) W / Wf, (i + 0.5) H / Hf).

    Returns:
        (G, Hf, Wf): each point's part of its group's mask (0 elsewhere); pixels equidistant to two
        points stay in both.
    """
    num, feat_h, feat_w = mask_prob.shape
    h, w = input_hw
    ys = (torch.arange(feat_h, device=points.device, dtype=points.dtype) + 0.5) * (h / feat_h)
    xs = (torch.arange(feat_w, device=points.device, dtype=points.dtype) + 0.5) * (w / feat_w)
    dist = (xs[None, None, :] - points[:, 0, None, None]) ** 2 + (ys[None, :, None] - points[:, 1, None, None]) ** 2
    dist = dist.reshape(num, -1)  # (G, P)
    _, group = torch.unique(keys, return_inverse=True)
    nearest = dist.new_full((int(group.max()) + 1 if num else 0, dist.shape[1]), float("inf"))
    nearest = nearest.scatter_reduce(0, group[:, None].expand_as(dist), dist, reduce="amin")
    own = dist <= nearest[group]
    return mask_prob * own.reshape(num, feat_h, feat_w).to(mask_prob.dtype)


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
        collision_rule: what happens when same-class points choose the same (level, cell): "reassign"
            (the point nearest the cell centre keeps it, the others take their best remaining level whose
            cell no other same-class point holds; with none left, "split"), "split" (they share the cell
            and split its mask: each pixel goes to the nearest of them), "share" (each gets the same
            whole mask: the published behaviour, the student sees one object twice).
        tiny_mask_rule: "before": a candidate whose mask area is <= its level's stride is excluded before
            the level is chosen, so a tiny mask never wins; "after" (published): the level is chosen
            among all candidates and a tiny chosen mask is dropped later (``postprocess_point_masks``).

    Returns:
        PointMaskSelection, one row per point in the input order.
    """
    if mode not in LEVEL_CANDIDATES:
        raise ValueError(f"unknown mode {mode!r}, expected one of {sorted(LEVEL_CANDIDATES)}")
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
    allowed = LEVEL_CANDIDATES[mode](
        num_points, num_levels, device, level=level, gt_sizes=gt_sizes, scale_ranges=scale_ranges
    )
    if prune:
        level_scores, cache, slot = _bounded_level_scores(
            cls_prob, allowed, inverse, kernel_rows, feats, min_area, mask_thr, max_chunk_pixels
        )
    else:
        area, maskness, cache = mask_area_maskness(kernel_rows, feats, mask_thr, max_chunk_pixels)  # one matmul/chunk
        level_scores = _candidate_scores(cls_prob, maskness[inverse], area[inverse], min_area)
        slot = (torch.arange(kernel_rows.shape[0], device=device) if cache is not None
                else torch.full((kernel_rows.shape[0],), -1, dtype=torch.long, device=device))
    evaluated = level_scores.masked_fill(torch.isnan(level_scores), _NEG_INF)
    chosen, valid = _argmax_finest(evaluated.masked_fill(~allowed, _NEG_INF))
    rows = torch.arange(num_points, device=device)
    chosen_u = inverse[rows, chosen]  # (M,) index into the U candidate masks
    # (class, level, cell) id of every candidate: equal ids are the same cell mask for the same class.
    keys = inverse * num_classes + classes[:, None]
    collided = torch.zeros(num_points, dtype=torch.bool, device=device)
    shared = collided.clone()
    first_keys = keys[rows, chosen].masked_fill(~valid, -1)
    uniq_keys, counts = torch.unique(first_keys[valid], return_counts=True)
    if bool((counts > 1).any()):  # same-class points chose the same cell
        distances = cell_centre_distances(points.to(feats.dtype), cells, input_hw, grids)
        if collision_rule == "reassign":  # pruned alternatives of the colliding points need their scores
            members = valid & torch.isin(first_keys, uniq_keys[counts > 1])
            _score_missing(level_scores, members[:, None] & allowed & torch.isnan(level_scores), cls_prob,
                           inverse, kernel_rows, feats, min_area, mask_thr, max_chunk_pixels)
        level, collided, shared = assign_cells(
            level_scores.masked_fill(~allowed, _NEG_INF), keys, distances, valid,
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
            mask_prob[shared], points[shared].to(feats.dtype), keys[rows, chosen][shared], input_hw)
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
    max_per_image: int = 0,
) -> PointPseudoLabels:
    """Turn chosen soft masks into binary pseudo-labels (METHOD.md section 3, post-processing).

    Steps: (1) drop invalid points and masks whose area (pixels > ``mask_thr`` at 1/4 res) is <= the
    chosen level's stride; (2) optionally class-aware mask NMS at IoU ``nms_iou`` on the 1/4-res binary
    masks, where two points of the same (level, cell) never suppress each other; (3) only if
    ``max_per_image`` > 0, keep at most that many by score (ties: lower point index; by default there is
    no cap: every point is a labelled object); (4) upsample the soft masks bilinearly to the
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
        max_per_image: cap on the number of pseudo-labels; <= 0 (default): no cap.

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

    num_capped = max(0, idx.numel() - max_per_image) if max_per_image > 0 else 0
    if num_capped:
        top = torch.sort(selection.score[idx], descending=True, stable=True).indices[:max_per_image]
        idx = idx[top].sort().values

    masks = masks_to_output(prob[idx], tuple(image_size), (out_h, out_w), mask_thr)
    return PointPseudoLabels(
        indices=idx,
        masks=masks,
        scores=selection.score[idx],
        classes=classes[idx],
        levels=selection.level[idx],
        num_capped=num_capped,
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
    collision_rule: str = "reassign",
    tiny_mask_rule: str = "before",
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
    cands, allowed_of = [], []
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
            tiny = area <= strides[l] and tiny_mask_rule == "before"
            cand.append((_NEG_INF if tiny else score, (r, c), prob))
            out_level_scores[i, l] = cand[-1][0]
        if mode == "adaptive":
            allowed = list(range(num_levels))
        elif mode == "fixed":
            allowed = [int(level) % num_levels]
        elif mode == "oracle":
            size = float(gt_sizes[i])
            inside = [l for l, (lo, hi) in enumerate(scale_ranges) if lo <= size < hi]
            dist = [max(lo - size, 0.0) + max(size - hi, 0.0) for lo, hi in scale_ranges]
            allowed = inside or [l for l in range(num_levels) if dist[l] == min(dist)]
        else:
            raise ValueError(mode)
        cands.append(cand)
        allowed_of.append([l for l in allowed if cand[l][0] > _NEG_INF])

    def best_of(i, levels):  # strict ">" keeps the finer level on ties
        best = None
        for l in sorted(levels):
            if best is None or cands[i][l][0] > cands[i][best][0]:
                best = l
        return best

    first = {i: best_of(i, allowed_of[i]) for i in range(num_points) if allowed_of[i]}

    def key(i, l):
        return (l, cands[i][l][1], int(classes[i]))

    def dist(i, l):
        grid = cate_logits[l].shape[-1]
        (r, c), (h, w) = cands[i][l][1], input_hw
        cy, cx = (r + 0.5) * h / grid, (c + 0.5) * w / grid
        return (float(points[i, 0]) - cx) ** 2 + (float(points[i, 1]) - cy) ** 2

    avail = {i: set(allowed_of[i]) for i in first}
    pending, held, chosen, lost = set(first), set(), {}, set()
    for _ in range(num_levels if collision_rule == "reassign" else 1):
        proposals = {i: best_of(i, avail[i]) for i in sorted(pending) if avail[i]}
        groups = {}
        for i, l in proposals.items():
            groups.setdefault(key(i, l), []).append(i)
        for k, members in groups.items():
            winner = None if k in held else min(members, key=lambda i: (dist(i, proposals[i]), i))
            if winner is not None:
                chosen[winner] = proposals[winner]
                held.add(k)
                pending.discard(winner)
            for i in members:
                if i != winner:
                    avail[i].discard(proposals[i])
                    lost.add(i)
    for i in pending:  # no free level left: back to the first choice, shared with its holder
        chosen[i] = first[i]
    shared_keys = {key(i, first[i]) for i in pending}
    shared = {i for i in chosen if key(i, chosen[i]) in shared_keys}
    if collision_rule == "share":
        chosen, shared = first, set()
    for i, best in chosen.items():
        out_level[i] = best
        out_cell[i] = torch.tensor(cands[i][best][1])
        out_score[i] = cands[i][best][0]
        out_mask[i] = cands[i][best][2]
    ys = (torch.arange(feat_h, dtype=mask_feats.dtype) + 0.5) * (input_hw[0] / feat_h)
    xs = (torch.arange(feat_w, dtype=mask_feats.dtype) + 0.5) * (input_hw[1] / feat_w)
    split = out_mask.clone()
    for i in shared:  # each pixel of a shared mask goes to the nearest point of those sharing it
        group = [j for j in shared if key(j, chosen[j]) == key(i, chosen[i])]
        d = {j: (xs[None, :] - float(points[j, 0])) ** 2 + (ys[:, None] - float(points[j, 1])) ** 2 for j in group}
        nearest = torch.stack([d[j] for j in group]).min(dim=0).values
        split[i] = out_mask[i] * (d[i] <= nearest)
    out_mask = split
    return PointMaskSelection(
        level=out_level,
        cell=out_cell,
        score=out_score,
        mask_prob=out_mask,
        valid=out_level >= 0,
        level_scores=out_level_scores,
        collided=torch.tensor([i in lost for i in range(num_points)], dtype=torch.bool),
        shared=torch.tensor([i in shared for i in range(num_points)], dtype=torch.bool),
    )
