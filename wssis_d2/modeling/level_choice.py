"""Which pyramid levels a point may take, and the best of them (pure functions, METHOD.md section 3).

Shape shorthand: M points, L levels. A level-choice mode (``MODEL.WSSIS.PSEUDO_LABEL_MODE`` minus
"threshold") only says which levels each point may take, an (M, L) bool mask (``allowed_levels``); the
highest-scoring allowed candidate then wins, ties to the finer (lower-index) level (``argmax_finest``).
"""
from typing import Optional, Sequence, Tuple

import torch

__all__ = ["LEVEL_MODES", "allowed_levels", "argmax_finest", "oracle_size_levels"]

NEG_INF = float("-inf")

# adaptive: every level; fixed: one given level; oracle_size: the one level the true size belongs to.
LEVEL_MODES = ("adaptive", "fixed", "oracle_size")


def argmax_finest(scores: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
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
    valid = best.squeeze(1) > NEG_INF
    return level, valid


def oracle_size_levels(gt_sizes: torch.Tensor, scale_ranges: Sequence[Sequence[float]]) -> torch.Tensor:
    """The one level the true size belongs to, so that the score never decides (the size oracle).

    The level whose range contains the size; where several do (overlapping ranges), the one whose centre
    sqrt(lo * hi) is nearest in log scale; where none does, the nearest range (distance
    max(lo - size, 0) + max(size - hi, 0)), again the nearest centre on ties; then the finer level.

    Args:
        gt_sizes: (M,) float, sqrt(w * h) of each true box in input pixels.
        scale_ranges: L pairs (lo, hi) in input pixels, half-open [lo, hi) as in the training targets
            (lo <= 0 counts as 1 and an infinite hi as lo for the centre).

    Returns:
        (M, L) bool with exactly one True per row.
    """
    ranges = torch.as_tensor(scale_ranges, dtype=torch.float64, device=gt_sizes.device).reshape(-1, 2)
    lo, hi = ranges[:, 0], ranges[:, 1]
    size = gt_sizes.to(torch.float64)[:, None]
    dist = (lo - size).clamp(min=0) + (size - hi).clamp(min=0)  # 0 inside [lo, hi], as the targets' test
    dist = torch.where((size >= lo) & (size < hi), torch.zeros_like(dist), dist.clamp(min=1e-9))
    centre = torch.log(lo.clamp(min=1)) + torch.log(torch.where(torch.isfinite(hi), hi, lo).clamp(min=1))
    off_centre = (torch.log(size.clamp(min=1e-6)) - centre / 2).abs()
    nearest = dist == dist.min(dim=1, keepdim=True).values
    level = off_centre.masked_fill(~nearest, float("inf")).argmin(dim=1)  # first minimum: finer on ties
    return torch.nn.functional.one_hot(level, len(ranges)).bool()


def allowed_levels(
    mode: str,
    num_points: int,
    num_levels: int,
    device,
    *,
    level: Optional[int] = None,
    gt_sizes: Optional[torch.Tensor] = None,
    scale_ranges: Optional[Sequence[Sequence[float]]] = None,
) -> torch.Tensor:
    """(M, L) bool: the levels each point may take in ``mode`` (one of ``LEVEL_MODES``).

    Args:
        level: the level index of mode "fixed" (negative counts from the coarsest).
        gt_sizes: (M,) float true instance sizes of mode "oracle_size" (``oracle_size_levels``).
        scale_ranges: L pairs (lo, hi) of mode "oracle_size".
    """
    if mode == "adaptive":
        return torch.ones(num_points, num_levels, dtype=torch.bool, device=device)
    if mode == "fixed":
        if level is None or not -num_levels <= int(level) < num_levels:
            raise ValueError(f"mode='fixed' needs level in [0, {num_levels}), got {level!r}")
        allowed = torch.zeros(num_points, num_levels, dtype=torch.bool, device=device)
        allowed[:, int(level) % num_levels] = True
        return allowed
    if mode == "oracle_size":
        if gt_sizes is None or scale_ranges is None:
            raise ValueError("mode='oracle_size' needs gt_sizes and scale_ranges")
        if len(scale_ranges) != num_levels or tuple(gt_sizes.shape) != (num_points,):
            raise ValueError("mode='oracle_size': need one scale range per level and one gt size per point")
        return oracle_size_levels(gt_sizes.to(device), scale_ranges)
    raise ValueError(f"unknown mode {mode!r}, expected one of {sorted(LEVEL_MODES)}")
