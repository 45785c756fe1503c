"""SOLOv2 training targets (pure functions, no ``nn.Module``).

Shape shorthand: N instances in one image, (H, W) the padded input, (Hf, Wf) = (H / 4, W / 4) the
mask-feature resolution, S the grid size of a level, C the number of classes.

Rules (METHOD.md section 1):
- an instance belongs to level l when sqrt(w * h) of its box lies in ``scale_ranges[l]``, half-open
  [lo, hi) as published (ranges may overlap, so one instance can train several levels; with
  non-overlapping ranges such as the teacher's, an instance at a boundary trains exactly one level);
- mask targets are binary: the GT mask downsampled to 1/4 resolution (``downsample_masks``);
- its positive cells are those inside its *center region*: the box centred on the mask's center of mass
  with half-sizes sigma * w / 2 and sigma * h / 2, clipped to at most the 3 x 3 cells around the cell
  that holds the center of mass;
- where center regions of several instances overlap on one level, the cell goes to the instance with
  the smallest mask area (a small object would otherwise lose all its cells to a large one).
"""
from typing import List, NamedTuple, Sequence, Tuple

import torch
import torch.nn.functional as F

from .grid import points_to_cells


class LevelTargets(NamedTuple):
    """Targets of one image on one level.

    Attributes:
        labels: (S, S) long, class index of each cell; ``num_classes`` marks background.
        pos_index: (P,) long, row-major flat indices of the positive cells.
        pos_masks: (P, Hf, Wf) float {0, 1}, the GT mask of each positive cell's instance at 1/4
            resolution.
    """

    labels: torch.Tensor
    pos_index: torch.Tensor
    pos_masks: torch.Tensor


def mask_centers(masks: torch.Tensor) -> torch.Tensor:
    """Center of mass of each mask.

    Args:
        masks: (N, H, W) bool or float.

    Returns:
        (N, 2) float, (x, y) in continuous pixel coordinates (pixel (i, j) has its center at
        (j + 0.5, i + 0.5)). An empty mask gives the center of the image.
    """
    n, h, w = masks.shape
    m = masks.float()
    area = m.sum(dim=(1, 2))
    ys = torch.arange(h, device=m.device, dtype=torch.float32) + 0.5
    xs = torch.arange(w, device=m.device, dtype=torch.float32) + 0.5
    cx = (m.sum(dim=1) * xs).sum(dim=1) / area.clamp(min=1)
    cy = (m.sum(dim=2) * ys).sum(dim=1) / area.clamp(min=1)
    empty = area == 0
    cx = torch.where(empty, torch.full_like(cx, w / 2.0), cx)
    cy = torch.where(empty, torch.full_like(cy, h / 2.0), cy)
    return torch.stack([cx, cy], dim=1)


def downsample_masks(masks: torch.Tensor, factor: int = 4) -> torch.Tensor:
    """Binary (N, H / factor, W / factor) float {0, 1} masks from (N, H, W) masks: a low-resolution pixel
    is foreground when at least half of its ``factor`` x ``factor`` block is (average pool, then >= 0.5).
    The Dice targets are binary as published (SOLOv2 rescales its GT masks), not soft coverage."""
    if masks.shape[0] == 0:
        h, w = masks.shape[-2:]
        return masks.new_zeros((0, h // factor, w // factor), dtype=torch.float32)
    return (F.avg_pool2d(masks.float()[:, None], factor, factor)[:, 0] >= 0.5).float()


def center_region_cells(
    centers: torch.Tensor,
    box_wh: torch.Tensor,
    input_hw: Tuple[int, int],
    num_grid: int,
    sigma: float,
) -> torch.Tensor:
    """Inclusive cell range of each instance's center region on one level.

    Args:
        centers: (N, 2) float, (x, y) centers of mass in padded-input pixels.
        box_wh: (N, 2) float, box width and height in pixels.
        input_hw: (H, W) of the padded input.
        num_grid: S.
        sigma: center-region scale (0.2 in the paper).

    Returns:
        (N, 4) long, (top, bottom, left, right) rows/cols, inclusive, within the 3 x 3 cells around
        the center cell and within [0, S - 1].
    """
    center_cell = points_to_cells(centers, input_hw, num_grid)  # (N, 2) row, col
    half = box_wh * (0.5 * sigma)
    top_left = points_to_cells(centers - half, input_hw, num_grid)
    bottom_right = points_to_cells(centers + half, input_hw, num_grid)
    top = torch.maximum(top_left[:, 0], center_cell[:, 0] - 1)
    bottom = torch.minimum(bottom_right[:, 0], center_cell[:, 0] + 1)
    left = torch.maximum(top_left[:, 1], center_cell[:, 1] - 1)
    right = torch.minimum(bottom_right[:, 1], center_cell[:, 1] + 1)
    return torch.stack([top, bottom, left, right], dim=1)


def assign_level_targets(
    masks: torch.Tensor,
    masks_down: torch.Tensor,
    classes: torch.Tensor,
    boxes: torch.Tensor,
    input_hw: Tuple[int, int],
    num_grids: Sequence[int],
    scale_ranges: Sequence[Sequence[float]],
    sigma: float,
    num_classes: int,
) -> List[LevelTargets]:
    """SOLOv2 targets of one image on every level, vectorised over instances.

    Args:
        masks: (N, H, W) bool GT masks at padded-input resolution.
        masks_down: (N, Hf, Wf) float {0, 1} GT masks at mask-feature resolution (``downsample_masks``).
        classes: (N,) long contiguous class indices in [0, C).
        boxes: (N, 4) float XYXY boxes in input pixels (their size picks the levels).
        input_hw: (H, W) of the padded input.
        num_grids: S of each level.
        scale_ranges: (min, max) of sqrt(w * h) per level, half-open [min, max).
        sigma: center-region scale.
        num_classes: C; the background label.

    Returns:
        One ``LevelTargets`` per level.
    """
    device = masks.device
    n = masks.shape[0]
    wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0)
    scale = torch.sqrt(wh[:, 0] * wh[:, 1])
    area = masks.flatten(1).sum(dim=1).float()
    valid = area > 0
    centers = mask_centers(masks)
    out = []
    for num_grid, (lo, hi) in zip(num_grids, scale_ranges):
        in_level = valid & (scale >= lo) & (scale < hi)
        labels = torch.full((num_grid, num_grid), num_classes, dtype=torch.long, device=device)
        if n == 0 or not bool(in_level.any()):
            hf, wf = masks_down.shape[-2:]
            out.append(LevelTargets(labels, labels.new_zeros(0), masks_down.new_zeros((0, hf, wf))))
            continue
        region = center_region_cells(centers, wh, input_hw, num_grid, sigma)  # (N, 4)
        rows = torch.arange(num_grid, device=device)
        in_rows = (rows[None] >= region[:, 0:1]) & (rows[None] <= region[:, 1:2])  # (N, S)
        in_cols = (rows[None] >= region[:, 2:3]) & (rows[None] <= region[:, 3:4])  # (N, S)
        covers = in_rows[:, :, None] & in_cols[:, None, :] & in_level[:, None, None]  # (N, S, S)
        # The smallest instance covering a cell owns it.
        key = torch.where(covers, area[:, None, None], torch.full_like(area[:, None, None], float("inf")))
        owner = key.argmin(dim=0)  # (S, S)
        positive = covers.any(dim=0)
        labels = torch.where(positive, classes[owner], labels)
        pos_index = positive.flatten().nonzero(as_tuple=True)[0]
        pos_owner = owner.flatten()[pos_index]
        out.append(LevelTargets(labels, pos_index, masks_down[pos_owner]))
    return out
