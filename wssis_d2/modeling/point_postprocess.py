"""Post-processing of point-chosen masks into binary pseudo-labels (METHOD.md section 3).

Pure tensor functions, one image at a time: the area filter, an optional class-aware mask NMS
(``point_mask_nms``, off by default), an optional per-image cap and the resize to the output image
(``postprocess_point_masks``). Shape shorthand: M points, K kept pseudo-labels, (Hf, Wf) mask features
at 1/4 of the padded input (H, W), (out_h, out_w) the output image.
"""
from typing import NamedTuple, Optional, Sequence, Tuple

import torch

from .point_filter import PointMaskSelection
from .postprocess import masks_to_output
from .tiling import greedy_keep

__all__ = ["PointPseudoLabels", "point_mask_nms", "postprocess_point_masks"]


class PointPseudoLabels(NamedTuple):
    """Post-processed pseudo-labels of one image, ordered by point index.

    indices: (K,) long, row of each pseudo-label in the ``PointMaskSelection`` (ascending).
    masks: (K, out_h, out_w) bool, binary masks at the output resolution.
    scores: (K,) float.
    classes: (K,) long, contiguous class index.
    levels: (K,) long, pyramid level each mask came from.
    num_capped: points dropped by ``max_per_image`` (0 without a cap).
    """

    indices: torch.Tensor
    masks: torch.Tensor
    scores: torch.Tensor
    classes: torch.Tensor
    levels: torch.Tensor
    num_capped: int = 0


def point_mask_nms(
    masks: torch.Tensor,
    scores: torch.Tensor,
    classes: torch.Tensor,
    iou_threshold: float = 0.5,
    exempt: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Exact greedy class-aware mask NMS, vectorised.

    Greedy NMS: visit masks by decreasing score; a kept mask suppresses the later ones of its class with
    IoU > ``iou_threshold`` (``tiling.greedy_keep``, exact and vectorised). Ties in score keep the lower
    index first.

    Args:
        masks: (K, ...) bool or {0, 1} float binary masks (any spatial size, flattened).
        scores: (K,) float.
        classes: (K,) long.
        iou_threshold: suppress when IoU > this.
        exempt: (K, K) bool, pairs that never suppress each other (e.g. two points of one cell).

    Returns:
        (K,) bool, True for kept masks.
    """
    num = masks.shape[0]
    if num == 0:
        return torch.zeros(0, dtype=torch.bool, device=masks.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    m = masks.reshape(num, -1)[order].to(torch.float32)
    inter = m @ m.t()
    area = m.sum(dim=1)
    iou = inter / (area[:, None] + area[None, :] - inter).clamp(min=1)
    cls = classes[order]
    suppresses = (iou > iou_threshold) & (cls[:, None] == cls[None, :])  # (i, j): j may suppress i
    if exempt is not None:
        suppresses &= ~exempt[order][:, order]
    keep = greedy_keep(suppresses)  # only earlier (higher-score) masks suppress
    out = torch.empty_like(keep)
    out[order] = keep
    return out


def postprocess_point_masks(
    selection: PointMaskSelection,
    classes: torch.Tensor,
    strides: Sequence[int],
    input_hw: Tuple[int, int],
    image_size: Tuple[int, int],
    output_size: Optional[Tuple[int, int]] = None,
    *,
    mask_thr: float = 0.5,
    nms_iou: Optional[float] = None,
    max_per_image: int = 0,
) -> PointPseudoLabels:
    """Turn chosen soft masks into binary pseudo-labels (METHOD.md section 3, post-processing).

    Steps: (1) drop invalid points and masks whose area (pixels > ``mask_thr`` at 1/4 res) is <= the
    chosen level's stride; (2) optionally class-aware mask NMS at IoU ``nms_iou`` on the 1/4-res binary
    masks, where two points of the same (level, cell) never suppress each other; (3) only if
    ``max_per_image`` > 0, keep at most that many by score (ties: lower point index; by default there is
    no cap: every point is a labelled object); (4) upsample the soft masks bilinearly to the
    padded input (H, W) (x4), crop to the image size, resize bilinearly to ``output_size`` and threshold
    at ``mask_thr``.

    NMS is off by default: in point-guided mode every point is a distinct annotated instance, so NMS can
    only remove a labelled instance. It exists for ablations (the published post-processing used it).

    Args:
        selection: output of ``select_point_masks`` for M points.
        classes: (M,) long, class of each point.
        strides: L ints, stride of each level.
        input_hw: (H, W) of the padded input.
        image_size: (h, w) of the image inside the padded input (h <= H, w <= W).
        output_size: (out_h, out_w) of the returned masks, e.g. the original image size; default
            ``image_size``.
        mask_thr: threshold at 1/4 and at full resolution.
        nms_iou: IoU threshold of the NMS; None disables it.
        max_per_image: cap on the number of pseudo-labels; <= 0 (default): no cap.

    Returns:
        PointPseudoLabels, ordered by point index.
    """
    prob = selection.mask_prob
    device = prob.device
    out_h, out_w = output_size if output_size is not None else image_size
    strides_t = torch.as_tensor(list(strides), device=device)
    binary = prob > mask_thr
    area = binary.flatten(1).sum(dim=1)
    keep = selection.valid & (area > strides_t[selection.level.clamp(min=0)])
    idx = torch.nonzero(keep).squeeze(1)
    classes = classes.to(device=device, dtype=torch.long)

    if nms_iou is not None and idx.numel() > 1:
        lv, cell = selection.level[idx], selection.cell[idx]
        same_cell = (lv[:, None] == lv[None, :]) & (cell[:, None] == cell[None, :]).all(dim=-1)
        idx = idx[point_mask_nms(binary[idx], selection.score[idx], classes[idx], nms_iou, exempt=same_cell)]

    num_capped = max(0, idx.numel() - max_per_image) if max_per_image > 0 else 0
    if num_capped:
        top = torch.sort(selection.score[idx], descending=True, stable=True).indices[:max_per_image]
        idx = idx[top].sort().values

    masks = masks_to_output(prob[idx], tuple(image_size), (out_h, out_w), mask_thr)
    return PointPseudoLabels(
        indices=idx,
        masks=masks,
        scores=selection.score[idx],
        classes=classes[idx],
        levels=selection.level[idx],
        num_capped=num_capped,
    )
