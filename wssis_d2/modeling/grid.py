"""Mapping between input-pixel coordinates and SOLOv2 grid cells (pure functions).

Coordinates follow detectron2's continuous convention: pixel (row i, column j) covers
[j, j + 1) x [i, i + 1), so its center is (j + 0.5, i + 0.5). A level with grid size S cuts the
*padded* input (H, W) into S x S cells; cell (r, c) covers y in [r * H / S, (r + 1) * H / S) and
x in [c * W / S, (c + 1) * W / S). Cells are flattened row-major: index = r * S + c.
"""
from typing import Tuple

import torch


def points_to_cells(points: torch.Tensor, input_hw: Tuple[int, int], num_grid: int) -> torch.Tensor:
    """Grid cell of each point on one level.

    Args:
        points: (M, 2) float, (x, y) in padded-input pixels (continuous convention).
        input_hw: (H, W) of the padded input the grid is laid over.
        num_grid: S of the level.

    Returns:
        (M, 2) long, (row, col) = (floor(y / H * S), floor(x / W * S)) clamped to [0, S - 1], so that
        points on the border or in the padding still map to a valid cell.
    """
    h, w = input_hw
    scale = points.new_tensor([num_grid / w, num_grid / h])
    xy = torch.floor(points.float() * scale).long().clamp_(0, num_grid - 1)
    return xy.flip(-1)


def cells_to_index(cells: torch.Tensor, num_grid: int) -> torch.Tensor:
    """Row-major flat index of (row, col) cells: (M, 2) long -> (M,) long."""
    return cells[..., 0] * num_grid + cells[..., 1]
