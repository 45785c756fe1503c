"""Scores of point candidates by branch and bound: only candidates that can still win are evaluated.

Pure tensor functions for ``point_filter.select_point_masks``. Shape shorthand: M points, L levels,
U distinct candidate cells (all levels), E kernel length, P = Hf * Wf mask-feature pixels.

A candidate's score is class probability x maskness (``candidate_scores``); maskness <= 1, so the class
probability bounds the score, and a candidate whose class probability is below the best score its point
already has cannot win. Visiting each point's levels by decreasing class probability thus skips most
mask computations (what keeps APS cheap at 100+ points per image) without changing any choice.
"""
from typing import Optional, Tuple

import torch

from .level_choice import NEG_INF
from .postprocess import mask_area_maskness

__all__ = ["candidate_scores", "bounded_level_scores", "score_missing"]


def candidate_scores(cls_prob, maskness, area, min_area):
    """Selection score of candidates (any matching shapes): class probability x maskness, -inf where the
    mask area (pixels at 1/4 resolution) is <= ``min_area`` (the level stride; -1 lets every mask compete)."""
    return (cls_prob * maskness).masked_fill(area <= min_area, NEG_INF)


def bounded_level_scores(
    cls_prob: torch.Tensor,
    allowed: torch.Tensor,
    inverse: torch.Tensor,
    kernel_rows: torch.Tensor,
    feats: torch.Tensor,
    min_area: torch.Tensor,
    mask_thr: float,
    max_chunk_pixels: int,
    bound: bool = True,
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
        mask_thr: mask probability threshold.
        max_chunk_pixels: memory budget of the soft masks held at once (and of the cache).
        bound: False: no pruning, every allowed candidate is evaluated.

    Returns:
        scores: (M, L) sigmoid(logit) x maskness, -inf for empty masks, NaN where not evaluated.
        cache: (V, P) soft masks of evaluated cells kept within ``max_chunk_pixels`` (or None);
        slot: (U,) long, row of each cell in ``cache``, -1 if not cached.
    """
    num_points, num_levels = cls_prob.shape
    num_cells, pixels = kernel_rows.shape[0], feats.shape[1]
    device = cls_prob.device
    scores = torch.full_like(cls_prob, float("nan"))
    best = torch.full((num_points,), NEG_INF, dtype=cls_prob.dtype, device=device)
    area_u = torch.full((num_cells,), -1, dtype=torch.long, device=device)  # -1: not evaluated yet
    maskness_u = cls_prob.new_zeros(num_cells)
    slot = torch.full((num_cells,), -1, dtype=torch.long, device=device)
    cache, cached_rows, cache_budget = [], 0, max_chunk_pixels // max(pixels, 1)
    order = cls_prob.masked_fill(~allowed, -1.0).argsort(dim=1, descending=True, stable=True)
    rows = torch.arange(num_points, device=device)
    for rank in range(num_levels):
        lvl = order[:, rank]
        prob = cls_prob[rows, lvl]
        todo = allowed[rows, lvl] & (prob >= best) if bound else allowed[rows, lvl]
        todo = todo.nonzero(as_tuple=True)[0]
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
        score = candidate_scores(prob[todo], maskness_u[cand], area_u[cand], min_area[lvl])
        scores[todo, lvl] = score
        best[todo] = torch.maximum(best[todo], score)
    return scores, (torch.cat(cache) if cache else None), slot


def score_missing(level_scores, todo, cls_prob, inverse, kernel_rows, feats, min_area, mask_thr,
                  max_chunk_pixels) -> None:
    """Fill in place the (M, L) ``level_scores`` where ``todo`` (M, L) bool: candidates that the
    branch and bound skipped (NaN) but that are needed after all (alternatives of colliding points)."""
    if not bool(todo.any()):
        return
    cand = inverse[todo]
    new, slot = torch.unique(cand, return_inverse=True)
    area, maskness, _ = mask_area_maskness(kernel_rows[new], feats, mask_thr, max_chunk_pixels)
    lvl = torch.nonzero(todo)[:, 1]  # boolean indexing is row-major, as nonzero
    level_scores[todo] = candidate_scores(cls_prob[todo], maskness[slot], area[slot], min_area[lvl])
