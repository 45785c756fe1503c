"""Crop boxes of MaskRefineNet: where each instance's S x S crop is taken (pure, batched functions).

Shape shorthand: N instances, H x W the full image.

Coordinate convention (detectron2's): continuous pixel coordinates in which pixel (row i, column j)
covers [j, j + 1) x [i, i + 1), so its center is (j + 0.5, i + 0.5). A box (x0, y0, x1, y1) is in these
coordinates; the tight box of a mask covering columns j0..j1 and rows i0..i1 is (j0, i0, j1 + 1, i1 + 1).
A box of width w is resized to S crop pixels, so the map from image coordinate x to crop coordinate u is
u = (x - x0) * S / w, and crop pixel (r, c) has its center at (c + 0.5, r + 0.5) in crop coordinates.
"""
from typing import Optional, Sequence, Tuple, Union

import torch

from ..modeling.postprocess import mask_boxes as mask_boxes_xyxy

__all__ = ["mask_boxes", "box_scales", "crop_boxes"]


def mask_boxes(masks: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Tight boxes of binary masks.

    Args:
        masks: (N, H, W) bool (or 0/1).

    Returns:
        boxes: (N, 4) float (x0, y0, x1, y1) on pixel edges: (j0, i0, j1 + 1, i1 + 1); all zeros for an
            empty mask.
        nonempty: (N,) bool.
    """
    boxes = mask_boxes_xyxy(masks)
    nonempty = masks.flatten(1).any(dim=1)
    return boxes, nonempty


def box_scales(
    num: int,
    scale: Union[float, Sequence[float], torch.Tensor],
    generator: Optional[torch.Generator] = None,
    device: Optional[torch.device] = None,
) -> torch.Tensor:
    """Per-instance box scale factors.

    Args:
        num: N.
        scale: a float (the same for all, e.g. 2.0 at inference); a pair (lo, hi) to draw uniformly in
            [lo, hi] per instance (e.g. (1.0, 2.0) while training); or an (N,) tensor used as is.
        generator: torch.Generator (on CPU) for the random draw; None uses the global RNG.

    Returns:
        (N,) float.
    """
    if isinstance(scale, torch.Tensor):
        if scale.numel() == 1:
            return scale.reshape(()).float().to(device).expand(num).clone()
        assert scale.shape == (num,), f"scale must be (N,)={num}, got {tuple(scale.shape)}"
        return scale.float().to(device)
    if isinstance(scale, (tuple, list)):
        lo, hi = (float(s) for s in scale)
        assert lo <= hi, f"scale range must be (lo, hi) with lo <= hi, got {scale}"
        u = torch.rand(num, generator=generator)
        return (lo + (hi - lo) * u).to(device)
    return torch.full((num,), float(scale), device=device)


def crop_boxes(
    masks: torch.Tensor,
    points: torch.Tensor,
    image_hw: Tuple[int, int],
    scale: Union[float, Sequence[float], torch.Tensor] = 2.0,
    *,
    generator: Optional[torch.Generator] = None,
    point_margin: float = 1.0,
    empty_box_size: float = 32.0,
) -> torch.Tensor:
    """Crop box of each instance for MaskRefineNet.

    The coarse mask's tight box is scaled by ``scale`` about its center, extended so that it contains
    the square of half-side ``point_margin`` around the point, and clipped to the image. An empty
    coarse mask uses instead a square of side ``empty_box_size`` (image pixels, before scaling)
    centered on the point. Every returned box contains its point (closed box; with at least
    ``point_margin`` pixels of margin on each side unless the image border is closer) and is at least
    ``min(point_margin, image size)`` pixels wide and high.

    Args:
        masks: (N, H, W) bool coarse masks.
        points: (N, 2) float (x, y), continuous image coordinates; clamped into [0, W] x [0, H].
        image_hw: (H, W) of the image (must equal the masks' size).
        scale: see :func:`box_scales`: 2.0 at inference, (1.0, 2.0) while training.
        generator: for the random scales.
        point_margin: pixels kept between the point and the box edges (before clipping).
        empty_box_size: side of the box used for an empty coarse mask, in image pixels, before scaling.

    Returns:
        (N, 4) float boxes (x0, y0, x1, y1) in continuous image coordinates.
    """
    h, w = int(image_hw[0]), int(image_hw[1])
    assert masks.shape[-2:] == (h, w), f"masks {tuple(masks.shape)} do not match image {(h, w)}"
    n = masks.shape[0]
    tight, nonempty = mask_boxes(masks)
    tight = tight.to(points.device)
    nonempty = nonempty.to(points.device)
    pts = points.float().clone()
    pts[:, 0].clamp_(0, w)
    pts[:, 1].clamp_(0, h)

    half = empty_box_size / 2.0
    empty = torch.cat([pts - half, pts + half], dim=1)
    base = torch.where(nonempty[:, None], tight, empty)

    s = box_scales(n, scale, generator, device=pts.device)
    center = (base[:, :2] + base[:, 2:]) / 2
    size = (base[:, 2:] - base[:, :2]) * s[:, None]
    lo = torch.minimum(center - size / 2, pts - point_margin)
    hi = torch.maximum(center + size / 2, pts + point_margin)
    limit = pts.new_tensor([w, h])
    lo = torch.maximum(lo, torch.zeros_like(lo))
    hi = torch.minimum(hi, limit.expand_as(hi))
    return torch.cat([lo, hi], dim=1)
