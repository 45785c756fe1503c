"""MaskRefineNet network inputs: crop + resize of the image, the point heatmap and the coarse mask.

Shape shorthand: N instances, H x W the full image, S x S the square crop (``out_size``), C image
channels, K heatmap channels. Coordinates: see :mod:`wssis_d2.mrn.boxes`; the +0.5 pixel centre enters
through ``roi_align(..., aligned=True)`` in :func:`crop_and_resize` (it shifts the box by -0.5 so that
samples fall on pixel centers). Binary masks are cropped with detectron2's ``BitMasks.crop_and_resize``
(the same roi_align, thresholded at 0.5).
"""
from typing import Dict, Optional

import torch
from torchvision.ops import roi_align

from detectron2.structures import BitMasks

from .heatmaps import expand_heatmap, heatmap_channels, point_heatmap

__all__ = ["crop_and_resize", "make_mrn_inputs"]


def crop_and_resize(images: torch.Tensor, boxes: torch.Tensor, out_size: int) -> torch.Tensor:
    """Crop each box and resize it to S x S (bilinear, area-averaged when shrinking).

    Uses ``roi_align(aligned=True)``: sample k of a bin lies at the continuous coordinate
    ``x0 + (c + (k + 0.5) / r) * w / S`` and is read by bilinear interpolation between pixel centers
    (j + 0.5); with an adaptive number r = ceil(w / S) of samples per bin. A box on integer pixel
    edges with w == S therefore returns the pixels unchanged.

    Args:
        images: (N, C, H, W) one image per box, or (1, C, H, W) shared by all boxes; any dtype
            (converted to float32 unless already floating).
        boxes: (N, 4) float (x0, y0, x1, y1), continuous image coordinates.
        out_size: S.

    Returns:
        (N, C, S, S) float.
    """
    n = boxes.shape[0]
    if not images.is_floating_point():
        images = images.float()
    if images.shape[0] == 1:
        idx = images.new_zeros((n, 1))
    else:
        assert images.shape[0] == n, f"{images.shape[0]} images for {n} boxes"
        idx = torch.arange(n, device=images.device, dtype=images.dtype)[:, None]
    if n == 0:
        return images.new_zeros((0, images.shape[1], out_size, out_size))
    rois = torch.cat([idx, boxes.to(device=images.device, dtype=images.dtype)], dim=1)
    return roi_align(images, rois, (out_size, out_size), 1.0, sampling_ratio=-1, aligned=True)


def make_mrn_inputs(
    image: torch.Tensor,
    coarse_masks: torch.Tensor,
    points: torch.Tensor,
    boxes: torch.Tensor,
    *,
    out_size: int,
    heatmap_mode: str,
    sigma: float = 6.0,
    classes: Optional[torch.Tensor] = None,
    num_classes: Optional[int] = None,
    compact_heatmap: bool = False,
) -> Dict[str, torch.Tensor]:
    """Network inputs of N instances of one image; used by both MRN training data and refinement.

    Args:
        image: (C, H, W) image shared by the N instances (pixel values as the model expects them
            before normalisation), or (N, C, H, W) one image per instance.
        coarse_masks: (N, H, W) bool coarse masks.
        points: (N, 2) float (x, y), continuous image coordinates.
        boxes: (N, 4) float crop boxes from :func:`crop_boxes`.
        out_size: S.
        heatmap_mode: "classwise" (uses ``classes`` and ``num_classes``) or "agnostic".
        sigma: heatmap sigma in crop pixels.
        classes: (N,) long contiguous class ids, required for "classwise".
        num_classes: C_cls, required for "classwise".
        compact_heatmap: with "classwise", return the 1-channel :func:`point_heatmap` and the
            classes instead of the K-channel heatmap (K = C_cls + 1 floats per pixel is large to move
            through data-loader workers); :meth:`MaskRefineNet.forward` expands it with
            :func:`expand_heatmap`, which is what happens here otherwise.

    Returns:
        dict with "image" (N, C, S, S) float, "heatmap" (N, K, S, S) float with
        K = heatmap_channels(heatmap_mode, num_classes), "coarse_mask" (N, 1, S, S) float in {0, 1};
        with ``compact_heatmap`` and "classwise": "heatmap" (N, 1, S, S) and "classes" (N,) long.
    """
    heatmap_channels(heatmap_mode, num_classes or 0)  # validates the mode
    classwise = heatmap_mode == "classwise"
    if classwise and classes is None:
        raise ValueError("heatmap_mode='classwise' needs the instances' classes")
    crops = crop_and_resize(image[None] if image.dim() == 3 else image, boxes, out_size)
    heat = point_heatmap(points, boxes, out_size, sigma)
    out = {"image": crops}
    if classwise and compact_heatmap:
        classes = classes.long().reshape(-1)
        if len(classes) and (classes.min() < 0 or classes.max() >= num_classes):
            raise ValueError(f"classes must lie in [0, {num_classes - 1}], got {classes.tolist()}")
        out["classes"] = classes
    elif classwise:
        heat = expand_heatmap(heat, classes, num_classes)
    out["heatmap"] = heat
    # detectron2's BitMasks.crop_and_resize: roi_align(aligned=True) as crop_and_resize, then >= 0.5
    out["coarse_mask"] = BitMasks(coarse_masks).crop_and_resize(boxes.to(coarse_masks.device), out_size).float()[:, None]
    return out
