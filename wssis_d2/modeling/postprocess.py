"""SOLOv2 inference post-processing (pure functions, no ``nn.Module``).

Shape shorthand: K candidate (cell, class) pairs of one image, E kernel length, (Hf, Wf) the
mask-feature resolution (1/4 of the padded input), (H, W) the padded input, (h, w) the unpadded input
image, (oh, ow) the requested output size.
"""
from typing import NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F

from detectron2.structures import Boxes, Instances


def dynamic_masks(kernels: torch.Tensor, mask_feats: torch.Tensor) -> torch.Tensor:
    """Apply dynamic 1x1 kernels to the mask features.

    Args:
        kernels: (K, E) one kernel per candidate.
        mask_feats: (E, Hf, Wf) mask features of one image.

    Returns:
        (K, Hf, Wf) mask logits.
    """
    e, hf, wf = mask_feats.shape
    return (kernels @ mask_feats.reshape(e, hf * wf)).reshape(-1, hf, wf)


def matrix_nms(
    masks: torch.Tensor,
    labels: torch.Tensor,
    scores: torch.Tensor,
    kernel: str = "gaussian",
    sigma: float = 2.0,
) -> torch.Tensor:
    """Matrix NMS (SOLOv2): decay every score by its overlap with higher-scored same-class masks.

    For masks sorted by decreasing score, with IoU_ij (i < j, same class; 0 otherwise) and
    comp_i = max_{k < i} IoU_ki (how much i itself is suppressed), the decayed score of j is
    ``s_j * min_{i < j} f(IoU_ij) / f(comp_i)`` with f(x) = exp(-sigma x^2) (gaussian) or 1 - x
    (linear); j = 0 keeps its score.

    Args:
        masks: (K, Hf, Wf) bool masks, sorted by decreasing ``scores``.
        labels: (K,) class of each mask.
        scores: (K,) scores, decreasing.
        kernel: "gaussian" or "linear".
        sigma: Gaussian kernel width.

    Returns:
        (K,) decayed scores (same order).
    """
    k = masks.shape[0]
    if k == 0:
        return scores
    flat = masks.reshape(k, -1).float()
    inter = flat @ flat.t()
    areas = flat.sum(dim=1)
    union = areas[:, None] + areas[None, :] - inter
    iou = (inter / union.clamp(min=1e-6)).triu(diagonal=1)  # iou[i, j] for i < j
    same_class = (labels[:, None] == labels[None, :]).triu(diagonal=1)
    decay_iou = iou * same_class
    comp_iou = decay_iou.max(dim=0).values  # (K,): comp_i, max IoU of i with a higher-scored mask
    if kernel == "gaussian":
        decay = torch.exp(-sigma * decay_iou**2) / torch.exp(-sigma * comp_iou[:, None] ** 2)
    elif kernel == "linear":
        decay = (1 - decay_iou) / (1 - comp_iou[:, None]).clamp(min=1e-6)
    else:
        raise ValueError(f"Unknown Matrix NMS kernel {kernel!r}; expected 'gaussian' or 'linear'")
    # Entries with i >= j have decay_iou = 0, so their ratio 1 / f(comp_i) is >= 1, while the i = 0
    # entry f(IoU_0j) / f(0) is <= 1: the plain column-wise min equals the min over i < j.
    return scores * decay.min(dim=0).values


class Candidates(NamedTuple):
    """Scored mask candidates of one image at mask-feature resolution.

    Attributes:
        mask_probs: (K, Hf, Wf) soft masks.
        scores: (K,) class probability x maskness.
        classes: (K,) long class index.
    """

    mask_probs: torch.Tensor
    scores: torch.Tensor
    classes: torch.Tensor


def point_nms(cate_probs: torch.Tensor) -> torch.Tensor:
    """SOLOv2's "point NMS" on one level's class-probability maps.

    A cell keeps its probability only where it equals the maximum of the 2 x 2 window made of itself
    and its upper, left and upper-left neighbours (per class); elsewhere it becomes 0. This is max-pooling
    with a 2 x 2 kernel, stride 1, padding 1, whose output is cropped to the top-left S x S.

    Args:
        cate_probs: (..., S, S) sigmoid probabilities (any leading dims, e.g. (C, S, S)).

    Returns:
        Tensor of the same shape: the kept probabilities, 0 where suppressed.
    """
    s_h, s_w = cate_probs.shape[-2:]
    flat = cate_probs.reshape(-1, 1, s_h, s_w)
    hmax = F.max_pool2d(flat, kernel_size=2, stride=1, padding=1)[..., :s_h, :s_w]
    return (flat * (hmax == flat)).reshape(cate_probs.shape)


def mask_area_maskness(
    kernel_rows: torch.Tensor, feats: torch.Tensor, mask_thr: float, max_chunk_pixels: int = 1 << 25
) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """Area and maskness of the dynamic masks of some cells, chunked over cells to bound memory.

    Args:
        kernel_rows: (U, E) kernels of U cells.
        feats: (E, P) flattened mask features (P = Hf * Wf).
        mask_thr: probability threshold in [0, 1).
        max_chunk_pixels: at most this many mask pixels are held at once.

    Returns:
        area: (U,) long, pixels with probability > ``mask_thr``; maskness: (U,) float, mean probability
        over those pixels (0 if none); probs: (U, P) the soft masks when they fit in one chunk, else None.
    """
    num, pixels = kernel_rows.shape[0], feats.shape[1]
    chunk = max(1, int(max_chunk_pixels) // max(pixels, 1))
    areas, masksums, probs = [], [], None
    keep = num <= chunk  # one chunk: its soft masks are returned, so threshold a copy
    for start in range(0, num, chunk):
        prob = torch.sigmoid_(kernel_rows[start : start + chunk] @ feats)  # (u, P): one matmul per chunk
        fg_prob = F.threshold(prob, mask_thr, 0.0, inplace=not keep)  # prob where prob > mask_thr, else 0
        # mask_thr >= 0, so the kept values are > 0: the area is their count (no bool -> long copy).
        areas.append(torch.count_nonzero(fg_prob, dim=1))
        masksums.append(fg_prob.sum(dim=1))
        if keep:
            probs = prob
    if not areas:
        return feats.new_zeros(0, dtype=torch.long), feats.new_zeros(0), feats.new_zeros(0, pixels)
    area, masksum = torch.cat(areas), torch.cat(masksums)
    return area, masksum / area.clamp(min=1).to(masksum.dtype), probs


def select_candidates(
    cate_probs: torch.Tensor,
    kernels: torch.Tensor,
    strides: torch.Tensor,
    mask_feats: torch.Tensor,
    *,
    score_thr: float,
    mask_thr: float,
    nms_pre: int,
    nms_kernel: str,
    nms_sigma: float,
    update_thr: float,
    max_per_img: int,
    max_chunk_pixels: int = 1 << 25,
) -> Candidates:
    """Ordinary (point-free) SOLOv2 inference on one image, up to the final resize.

    The published order (METHOD.md section 1): (point NMS is applied by the caller, per level, on the
    (C, S, S) maps; see ``point_nms``) keep (cell, class) pairs with probability > ``score_thr``; compute
    their masks; drop masks whose area (pixels > ``mask_thr``) is <= the level stride; score = class
    probability x maskness; keep the top ``nms_pre`` by that score; Matrix NMS; drop decayed scores
    < ``update_thr``; keep the top ``max_per_img``. Masks of all thresholded pairs are scored in chunks of
    at most ``max_chunk_pixels`` pixels; only the ``nms_pre`` kept ones are materialised.

    Args:
        cate_probs: (A, C) class probabilities of all A cells of all levels (after point NMS).
        kernels: (A, E) kernels of those cells.
        strides: (A,) stride of each cell's level.
        mask_feats: (E, Hf, Wf).
        score_thr: keep (cell, class) pairs above this probability.
        mask_thr: mask binarisation threshold.
        nms_pre: at most this many candidates (by class probability x maskness) enter Matrix NMS.
        nms_kernel, nms_sigma: Matrix NMS settings.
        update_thr: drop candidates whose decayed score is below this.
        max_per_img: keep the top detections.
        max_chunk_pixels: memory bound of the scoring pass.

    Returns:
        ``Candidates`` sorted by decreasing score.
    """
    cell, cls = (cate_probs > score_thr).nonzero(as_tuple=True)
    probs = cate_probs[cell, cls]
    e, hf, wf = mask_feats.shape
    feats = mask_feats.reshape(e, hf * wf)
    # A cell above threshold for several classes shares one mask: score each distinct cell once.
    uniq, inverse = torch.unique(cell, return_inverse=True)
    area, maskness, soft = mask_area_maskness(kernels[uniq], feats, mask_thr, max_chunk_pixels)
    keep = area[inverse] > strides[cell].to(area.dtype)
    scores = probs * maskness[inverse]
    cell, cls, scores, inverse = cell[keep], cls[keep], scores[keep], inverse[keep]
    scores, order = scores.sort(descending=True, stable=True)
    order = order[:nms_pre]
    scores, cell, cls, inverse = scores[:nms_pre], cell[order], cls[order], inverse[order]
    if soft is not None:
        mask_probs = soft[inverse].reshape(-1, hf, wf)
    else:
        mask_probs = dynamic_masks(kernels[cell], mask_feats).sigmoid()
    scores = matrix_nms(mask_probs > mask_thr, cls, scores, kernel=nms_kernel, sigma=nms_sigma)
    keep = scores >= update_thr
    mask_probs, scores, cls = mask_probs[keep], scores[keep], cls[keep]
    scores, order = scores.sort(descending=True, stable=True)
    order = order[:max_per_img]
    return Candidates(mask_probs[order], scores[:max_per_img], cls[order])


def masks_to_output(
    mask_probs: torch.Tensor,
    image_hw: Tuple[int, int],
    output_hw: Tuple[int, int],
    mask_thr: float,
) -> torch.Tensor:
    """Upsample soft masks at 1/4 of the padded input to the output resolution.

    Args:
        mask_probs: (K, Hf, Wf) soft masks over the padded input (H, W) = (4 Hf, 4 Wf).
        image_hw: (h, w) of the unpadded input image inside the padded one (top-left aligned).
        output_hw: (oh, ow) of the original image the results are reported in.
        mask_thr: threshold applied at output resolution.

    Returns:
        (K, oh, ow) bool masks.
    """
    k, hf, wf = mask_probs.shape
    if k == 0:
        return mask_probs.new_zeros((0,) + tuple(output_hw), dtype=torch.bool)
    up = F.interpolate(mask_probs[:, None], size=(hf * 4, wf * 4), mode="bilinear", align_corners=False)
    up = up[:, :, : image_hw[0], : image_hw[1]]
    if tuple(output_hw) != tuple(up.shape[-2:]):
        up = F.interpolate(up, size=tuple(output_hw), mode="bilinear", align_corners=False)
    return up[:, 0] > mask_thr


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight XYXY boxes of (K, H, W) bool masks, vectorised: (K, 4) float, [x0, y0, x1 + 1, y1 + 1] in pixels
    (as ``BitMasks.get_bounding_boxes``), all zeros for an empty mask.

    Kept over detectron2's ``BitMasks.get_bounding_boxes``: equal results (empty masks included, tested),
    but that one loops over masks in Python and returns CPU boxes; this is one pass on the masks' device
    (about 6x faster for 300 masks of 400 x 600 on one CPU thread)."""
    num, h, w = masks.shape
    if num == 0:
        return masks.new_zeros((0, 4), dtype=torch.float32)
    flat = masks.view(torch.uint8) if masks.dtype == torch.bool else (masks != 0).to(torch.uint8)
    rows, cols = flat.amax(dim=2), flat.amax(dim=1)  # (K, H), (K, W); uint8 max is much faster than any()
    # argmax of a 0/1 row gives its first 1; on the flipped row, the last one.
    y0 = rows.argmax(dim=1)
    y1 = h - rows.flip(1).argmax(dim=1)
    x0 = cols.argmax(dim=1)
    x1 = w - cols.flip(1).argmax(dim=1)
    boxes = torch.stack([x0, y0, x1, y1], dim=1).to(torch.float32)
    return boxes * rows.amax(dim=1, keepdim=True)


def candidates_to_instances(
    cands: Candidates, image_hw: Tuple[int, int], output_hw: Tuple[int, int], mask_thr: float
) -> Instances:
    """detectron2 ``Instances`` (pred_masks, scores, pred_classes, pred_boxes) at output size."""
    masks = masks_to_output(cands.mask_probs, image_hw, output_hw, mask_thr)
    result = Instances(tuple(output_hw))
    result.pred_masks = masks
    result.scores = cands.scores
    result.pred_classes = cands.classes
    result.pred_boxes = Boxes(mask_boxes(masks))
    return result
