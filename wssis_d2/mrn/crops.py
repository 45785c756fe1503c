"""Crops, heatmaps and paste-back for MaskRefineNet (pure, batched functions).

Shape shorthand: N instances, H x W the full image, S x S the square crop (``out_size``), C image
channels, K heatmap channels.

Coordinate convention (detectron2's, used everywhere in this module): continuous pixel coordinates in
which pixel (row i, column j) covers [j, j + 1) x [i, i + 1), so its center is (j + 0.5, i + 0.5).
A box (x0, y0, x1, y1) is in these coordinates; the tight box of a mask covering columns j0..j1 and
rows i0..i1 is (j0, i0, j1 + 1, i1 + 1). A box of width w is resized to S crop pixels, so the map from
image coordinate x to crop coordinate u is u = (x - x0) * S / w, and crop pixel (r, c) has its center
at (c + 0.5, r + 0.5) in crop coordinates. The only places where the +0.5 pixel center enters are:
``roi_align(..., aligned=True)`` in :func:`crop_and_resize` (it shifts the box by -0.5 so that samples
fall on pixel centers), the crop-pixel centers in :func:`gaussian_heatmap`, and the image-pixel
centers in :func:`paste_masks`.

Heatmap channel mapping (one function, :func:`expand_heatmap`, serves training and inference; the
training data loader ships the 1-channel :func:`point_heatmap` plus the class and the model expands it):

- class-agnostic: 1 channel holding the point's Gaussian.
- class-wise: C_cls + 1 channels. Channel 0 always holds the point's Gaussian whatever the class
  (it is the class-agnostic channel); channel ``c + 1`` holds it for contiguous class id ``c`` in
  [0, C_cls - 1]. Class 0 therefore has channel 1, which is never zeroed; all other channels are 0.
"""
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from ..modeling.postprocess import mask_boxes as mask_boxes_xyxy

__all__ = [
    "HEATMAP_MODES",
    "heatmap_channels",
    "mask_boxes",
    "box_scales",
    "crop_boxes",
    "crop_and_resize",
    "crop_masks",
    "point_heatmap",
    "expand_heatmap",
    "gaussian_heatmap",
    "make_mrn_inputs",
    "paste_masks",
    "merge_refined",
]

HEATMAP_MODES = ("classwise", "agnostic")


def heatmap_channels(mode: str, num_classes: int) -> int:
    """K: number of heatmap channels: ``num_classes + 1`` for "classwise", 1 for "agnostic"."""
    if mode == "classwise":
        return num_classes + 1
    if mode == "agnostic":
        return 1
    raise ValueError(f"Unknown MRN heatmap mode {mode!r}; expected one of {HEATMAP_MODES}.")


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


def crop_masks(
    masks: torch.Tensor, boxes: torch.Tensor, out_size: int, threshold: Optional[float] = 0.5
) -> torch.Tensor:
    """Crop-and-resize binary masks (see :func:`crop_and_resize`).

    Args:
        masks: (N, H, W) bool or float, one mask per box.
        boxes: (N, 4) float, continuous image coordinates.
        out_size: S.
        threshold: binarise the resampled mask with ``>= threshold``; None keeps it soft.

    Returns:
        (N, S, S) bool, or float in [0, 1] when ``threshold`` is None.
    """
    crops = crop_and_resize(masks[:, None].float(), boxes, out_size)[:, 0]
    return crops if threshold is None else crops >= threshold


def point_heatmap(points: torch.Tensor, boxes: torch.Tensor, out_size: int,
                  sigma: float = 6.0) -> torch.Tensor:
    """The point's Gaussian on each crop (the class-agnostic heatmap channel).

    value(r, c) = exp(-((c + 0.5 - u)^2 + (r + 0.5 - v)^2) / (2 sigma^2)), with (u, v) the point in
    crop coordinates (see the module docstring): the Gaussian peaks at 1 at the point itself.

    Args:
        points: (N, 2) float (x, y), continuous image coordinates.
        boxes: (N, 4) float crop boxes, continuous image coordinates.
        out_size: S.
        sigma: standard deviation in OUTPUT crop pixels (6 in the paper for S = 256).

    Returns:
        (N, 1, S, S) float.
    """
    pts = points.float()
    boxes = boxes.float().to(pts.device)
    wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1e-6)
    uv = (pts - boxes[:, :2]) * (out_size / wh)  # (N, 2) crop coordinates
    centers = torch.arange(out_size, device=pts.device, dtype=torch.float32) + 0.5
    gx = torch.exp(-((centers[None, :] - uv[:, :1]) ** 2) / (2 * sigma**2))  # (N, S)
    gy = torch.exp(-((centers[None, :] - uv[:, 1:]) ** 2) / (2 * sigma**2))  # (N, S)
    return (gy[:, :, None] * gx[:, None, :])[:, None]  # (N, 1, S, S), separable Gaussian


def expand_heatmap(heatmap: torch.Tensor, classes: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Class-wise heatmap from the 1-channel point heatmap (the channel rule of the module docstring).

    Args:
        heatmap: (N, 1, S, S) float, from :func:`point_heatmap`.
        classes: (N,) long contiguous class ids in [0, num_classes - 1].
        num_classes: C_cls.

    Returns:
        (N, C_cls + 1, S, S): the Gaussian in channel 0 and in channel ``classes[i] + 1``, zeros
        elsewhere.
    """
    n, _, s, _ = heatmap.shape
    classes = classes.long().reshape(-1).to(heatmap.device)
    if n and (classes.min() < 0 or classes.max() >= num_classes):
        raise ValueError(f"classes must lie in [0, {num_classes - 1}], got {classes.tolist()}")
    out = heatmap.new_zeros((n, num_classes + 1, s, s))
    out[:, 0] = heatmap[:, 0]
    out[torch.arange(n, device=heatmap.device), classes + 1] = heatmap[:, 0]
    return out


def gaussian_heatmap(
    points: torch.Tensor,
    boxes: torch.Tensor,
    out_size: int,
    sigma: float = 6.0,
    classes: Optional[torch.Tensor] = None,
    num_classes: Optional[int] = None,
) -> torch.Tensor:
    """Gaussian point heatmaps on the crops; the single implementation for training and inference.

    :func:`point_heatmap`, then :func:`expand_heatmap` when ``classes`` is given.

    Args:
        points: (N, 2) float (x, y), continuous image coordinates.
        boxes: (N, 4) float crop boxes, continuous image coordinates.
        out_size: S.
        sigma: standard deviation in OUTPUT crop pixels (6 in the paper for S = 256).
        classes: (N,) long contiguous class ids in [0, num_classes - 1] for the class-wise heatmap;
            None for the class-agnostic heatmap.
        num_classes: C_cls, required with ``classes``.

    Returns:
        (N, 1, S, S) float when ``classes`` is None; otherwise (N, C_cls + 1, S, S) with the
        Gaussian in channel 0 and in channel ``classes[i] + 1``, zeros elsewhere.
    """
    g = point_heatmap(points, boxes, out_size, sigma)
    if classes is None:
        return g
    assert num_classes is not None, "num_classes is required for a class-wise heatmap"
    return expand_heatmap(g, classes, num_classes)


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
            :func:`expand_heatmap`, which is what :func:`gaussian_heatmap` does here otherwise.

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
    out["coarse_mask"] = crop_masks(coarse_masks, boxes, out_size).float()[:, None]
    return out


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
