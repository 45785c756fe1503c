"""Same-cell points (collisions): give each point its own (level, cell), or split a shared cell's mask.

Pure tensor functions for ``point_filter.select_point_masks``, one image at a time. Shape shorthand: M
points, L levels, G points sharing cells, (Hf, Wf) mask features at 1/4 of the padded input (H, W).
Points are (x, y) in padded-input pixels (continuous convention, ``grid``).

Two points collide when they choose the same (level, cell), whatever their classes: one cell, one mask,
one object.
``MODEL.WSSIS.COLLISION_RULE`` (``COLLISION_RULES``) decides: "reassign" (default; the point nearest the
cell centre keeps it, the others move to their best free level, ``assign_cells``; with none left they
split the cell's mask, ``split_shared_masks``), "split", or "share" (the same whole mask for each: the
published code's behaviour).
"""
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F

from .level_choice import NEG_INF, argmax_finest

__all__ = ["COLLISION_RULES", "assign_cells", "cell_centre_distances", "split_shared_masks"]

COLLISION_RULES = ("reassign", "split", "share")

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
    """Give each point its own (level, cell): the collision rule of points in one cell.

    Two points collide when they choose the same key (same level and cell). Rounds, batched over
    points (at most L rounds): every unresolved point proposes its best remaining level (highest score,
    ties to the finer level); among the points proposing one key, the one nearest the cell centre (ties:
    lower index) takes it, unless a point of an earlier round already holds it; the others lose that
    level and propose again (``reassign``) or stop (``reassign=False``). A point left without any free
    level falls back to its first choice and shares that cell with its holder (see ``split_shared_masks``).

    Args:
        scores: (M, L) float, -inf (or NaN) for candidates a point may not take.
        keys: (M, L) long, one id per (level, cell): equal ids collide.
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
    avail = valid[:, None] & ~torch.isnan(scores) & (scores > NEG_INF)
    level = torch.full((num_points,), -1, dtype=torch.long, device=device)
    first = level.clone()
    collided = torch.zeros(num_points, dtype=torch.bool, device=device)
    pending = valid.clone()
    held = keys.new_zeros(0)
    for rnd in range(num_levels if reassign else 1):
        idx = pending.nonzero(as_tuple=True)[0]
        if idx.numel() == 0:
            break
        lvl, ok = argmax_finest(scores[idx].masked_fill(~avail[idx], NEG_INF))
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
    mask_prob: torch.Tensor, points: torch.Tensor, keys: torch.Tensor, input_hw: Tuple[int, int],
    mask_thr: float = 0.5,
) -> torch.Tensor:
    """Split each mask that several points share among them: a pixel goes to the nearest of those points.
    Each point also keeps the foreground pixels (> ``mask_thr``) of the 3 x 3 block around the foreground
    pixel nearest to it, so that points packed closer than the 1/4-res pixels keep a mask that survives
    the upsampling to full resolution.

    Args:
        mask_prob: (G, Hf, Wf) soft masks of G points (identical within a group).
        points: (G, 2) (x, y) in padded-input pixels.
        keys: (G,) long, group id (points with equal keys share one mask).
        input_hw: (H, W) of the padded input; pixel (i, j) of the 1/4-res mask has its centre at
            ((j + 0.5) W / Wf, (i + 0.5) H / Hf).

    Returns:
        (G, Hf, Wf): each point's part of its group's mask (0 elsewhere); pixels equidistant to two
        points stay in both, and so do the blocks around the points.
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
    fg = mask_prob.reshape(num, -1) > mask_thr
    seed = torch.zeros_like(own)
    seed[torch.arange(num), dist.masked_fill(~fg, float("inf")).argmin(dim=1)] = True
    block = F.max_pool2d(seed.reshape(num, 1, feat_h, feat_w).to(dist.dtype), 3, stride=1, padding=1)
    own |= block.reshape(num, -1).bool() & fg
    return mask_prob * own.reshape(num, feat_h, feat_w).to(mask_prob.dtype)
