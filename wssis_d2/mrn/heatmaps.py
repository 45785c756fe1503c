"""Point heatmaps of MaskRefineNet on the crops (pure, batched functions).

Shape shorthand: N instances, S x S the square crop, K heatmap channels. Coordinates: see
:mod:`wssis_d2.mrn.boxes`; the +0.5 crop-pixel centre enters in :func:`point_heatmap`.

Heatmap channel mapping (one function, :func:`expand_heatmap`, serves training and inference; the
training data loader ships the 1-channel :func:`point_heatmap` plus the class and the model expands it):

- class-agnostic: 1 channel holding the point's Gaussian.
- class-wise: C_cls + 1 channels. Channel 0 always holds the point's Gaussian whatever the class
  (it is the class-agnostic channel); channel ``c + 1`` holds it for contiguous class id ``c`` in
  [0, C_cls - 1]. Class 0 therefore has channel 1, which is never zeroed; all other channels are 0.
"""
import torch

__all__ = ["HEATMAP_MODES", "heatmap_channels", "point_heatmap", "expand_heatmap"]

HEATMAP_MODES = ("classwise", "agnostic")


def heatmap_channels(mode: str, num_classes: int) -> int:
    """K: number of heatmap channels: ``num_classes + 1`` for "classwise", 1 for "agnostic"."""
    if mode == "classwise":
        return num_classes + 1
    if mode == "agnostic":
        return 1
    raise ValueError(f"Unknown MRN heatmap mode {mode!r}; expected one of {HEATMAP_MODES}.")


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
