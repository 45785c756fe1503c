"""Paste-back of MaskRefineNet crops into full-size masks, and the refined / coarse merge.

Shape shorthand: N instances, H x W the full image, S x S the square crop. Coordinates: see
:mod:`wssis_d2.mrn.boxes`; the +0.5 image-pixel centre enters in :func:`paste_masks`.

:func:`paste_masks` is kept rather than detectron2's ``paste_masks_in_image``: that one pads the crop
with zeros, so the last half crop pixel inside the box fades out and masks lose pixels along the box
edges; here the crop border is replicated up to the box edge (tests/test_mrn.py shows the difference).
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from .boxes import mask_boxes

__all__ = ["paste_masks", "merge_refined"]


def paste_masks(
    probs: torch.Tensor,
    boxes: torch.Tensor,
    image_hw: Tuple[int, int],
    threshold: Optional[float] = 0.5,
    *,
    max_chunk_pixels: int = 1 << 26,
) -> torch.Tensor:
    """Paste S x S crop probabilities back into empty full-size masks (inverse of the crop).

    Image pixel center (j + 0.5, i + 0.5) inside box (x0, y0, x1, y1) reads the crop bilinearly at
    u = (j + 0.5 - x0) * S / (x1 - x0) (likewise v), i.e. ``grid_sample(align_corners=False)`` on the
    normalised coordinate 2 u / S - 1, with border replication in the last half crop pixel; pixels whose
    center lies outside the box get 0. Instances are processed in chunks of at most
    ``max_chunk_pixels`` output pixels to bound memory.

    Args:
        probs: (N, S, S) float crop values, usually foreground probabilities.
        boxes: (N, 4) float crop boxes, continuous image coordinates.
        image_hw: (H, W).
        threshold: binarise with ``>= threshold``; None returns the pasted float values.

    Returns:
        (N, H, W) bool, or float when ``threshold`` is None.
    """
    if threshold is not None and threshold <= 0:
        raise ValueError("threshold must be > 0 so that pixels outside the box stay empty")
    h, w = int(image_hw[0]), int(image_hw[1])
    n, s = probs.shape[0], probs.shape[-1]
    assert probs.shape[-2] == s, "crops must be square"
    dev = probs.device
    out = torch.zeros((n, h, w), dtype=torch.bool if threshold is not None else probs.dtype, device=dev)
    if n == 0:
        return out
    boxes = boxes.float().to(dev)
    xs = torch.arange(w, device=dev, dtype=torch.float32) + 0.5
    ys = torch.arange(h, device=dev, dtype=torch.float32) + 0.5
    chunk = max(1, max_chunk_pixels // max(1, h * w))
    for start in range(0, n, chunk):  # memory chunks, not a per-instance loop
        b = boxes[start : start + chunk]
        p = probs[start : start + chunk, None].float()
        bw = (b[:, 2] - b[:, 0]).clamp(min=1e-6)
        bh = (b[:, 3] - b[:, 1]).clamp(min=1e-6)
        gx = 2 * (xs[None] - b[:, :1]) / bw[:, None] - 1  # (n, W), in [-1, 1] inside the box
        gy = 2 * (ys[None] - b[:, 1:2]) / bh[:, None] - 1  # (n, H)
        grid = torch.stack(
            [gx[:, None, :].expand(-1, h, -1), gy[:, :, None].expand(-1, -1, w)], dim=-1
        )
        vals = F.grid_sample(p, grid, mode="bilinear", padding_mode="border", align_corners=False)[:, 0]
        inside = (gx.abs() <= 1)[:, None, :] & (gy.abs() <= 1)[:, :, None]
        vals = vals * inside
        out[start : start + chunk] = vals >= threshold if threshold is not None else vals.to(out.dtype)
    return out


def merge_refined(
    coarse_masks: torch.Tensor, refined_masks: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Final pseudo-label masks: the refined mask, or the coarse one where the refined mask is empty.

    Args:
        coarse_masks: (N, H, W) bool.
        refined_masks: (N, H, W) bool.

    Returns:
        masks: (N, H, W) bool.
        boxes: (N, 4) float tight boxes of ``masks`` (see :func:`mask_boxes`; zeros if empty).
    """
    refined_masks = refined_masks.bool()
    keep_refined = refined_masks.flatten(1).any(dim=1)
    masks = torch.where(keep_refined[:, None, None], refined_masks, coarse_masks.bool())
    boxes, _ = mask_boxes(masks)
    return masks, boxes
