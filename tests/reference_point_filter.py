"""Per-point, per-level reference loop of ``wssis_d2.modeling.point_filter.select_point_masks``.

Not part of the package: the tests compare the batched filter with it, and the benchmarks
(``tools/benchmark_point_filter.py``, ``tools/benchmark_pseudo_labels.py``) time it. It follows the same
rules (module docstring of ``point_filter``) one point and one level at a time, in plain Python.
"""
import math
from typing import Optional, Sequence, Tuple

import torch

from wssis_d2.modeling.grid import points_to_cells
from wssis_d2.modeling.point_filter import PointMaskSelection

__all__ = ["reference_select_point_masks"]

_NEG_INF = float("-inf")


def reference_select_point_masks(
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
    """Per-point, per-level loop with the same rules as ``select_point_masks``."""
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
        elif mode == "oracle_size":
            size = float(gt_sizes[i])
            inside = [l for l, (lo, hi) in enumerate(scale_ranges) if lo <= size < hi]
            dist = [max(lo - size, 0.0) + max(size - hi, 0.0) for lo, hi in scale_ranges]
            near = inside or [l for l in range(num_levels) if dist[l] == min(dist)]
            centre = [math.sqrt(max(lo, 1) * max(hi if math.isfinite(hi) else lo, 1)) for lo, hi in scale_ranges]
            allowed = [min(near, key=lambda l: (abs(math.log(max(size, 1e-6) / centre[l])), l))]
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
        return (l, cands[i][l][1])  # a cell has one mask for every class

    def dist(i, l):
        grid = cate_logits[l].shape[-1]
        (r, c), (h, w) = cands[i][l][1], input_hw
        cy, cx = (r + 0.5) * h / grid, (c + 0.5) * w / grid
        return (float(points[i, 0]) - cx) ** 2 + (float(points[i, 1]) - cy) ** 2

    first_classes = {}
    for i in first:
        first_classes.setdefault(key(i, first[i]), set()).add(int(classes[i]))
    cross = {i for i in first if len(first_classes[key(i, first[i])]) > 1}
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
        own = d[i] <= nearest
        fg = out_mask[i] > mask_thr
        if fg.any():  # the foreground of the 3 x 3 block around its nearest foreground pixel
            flat = int(d[i].masked_fill(~fg, float("inf")).flatten().argmin())
            r, c = divmod(flat, feat_w)
            own[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2] |= fg[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2]
        split[i] = out_mask[i] * own
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
        cross_class=torch.tensor([i in cross for i in range(num_points)], dtype=torch.bool),
    )
