"""Ordinary (point-free) SOLOv2 inference of one image: its head outputs (``ImageHeads``) and the
``PlainDecoder`` that turns them into detections.

The decoder is configured once from ``MODEL.SOLOV2`` (grids, strides, thresholds, NMS settings) and
needs nothing of the model at call time: ``WSSISSOLOv2`` uses it for images without points, and
``point_inference.ScoreThresholdDecoder`` (the SSIS baseline) for point images.

Shape shorthand: L levels, C classes, E kernel length, (Hf, Wf) mask features = 1/4 of the padded
input (H, W); (h, w) the unpadded input image; (oh, ow) the output (original) image.
"""
from typing import List, NamedTuple, Sequence, Tuple

import torch

from detectron2.config import configurable
from detectron2.structures import Instances

from .postprocess import candidates_to_instances, point_nms, select_candidates

__all__ = ["ImageHeads", "PlainDecoder"]


class ImageHeads(NamedTuple):
    """Head outputs of one image and its geometry.

    cate_logits: L tensors (C, S_l, S_l); kernels: L tensors (E, S_l, S_l); mask_feats: (E, Hf, Wf);
    input_hw: (H, W) padded input; image_hw: (h, w) image inside it (top-left); output_hw: (oh, ow).
    """

    cate_logits: List[torch.Tensor]
    kernels: List[torch.Tensor]
    mask_feats: torch.Tensor
    input_hw: Tuple[int, int]
    image_hw: Tuple[int, int]
    output_hw: Tuple[int, int]


class PlainDecoder:
    """Ordinary SOLOv2 inference of one image (no points): point NMS, threshold, masks, area filter,
    maskness, top ``nms_pre``, Matrix NMS, top-k, resize to ``output_hw`` (``postprocess.select_candidates``)."""

    @configurable
    def __init__(
        self,
        *,
        num_grids: Sequence[int],
        strides: Sequence[int],
        score_thr: float,
        mask_thr: float,
        nms_pre: int,
        nms_kernel: str,
        nms_sigma: float,
        update_thr: float,
        max_per_img: int,
    ):
        """
        Args:
            num_grids: S per instance level; strides: stride per level (the mask-area filter).
            score_thr, mask_thr, nms_pre, nms_kernel, nms_sigma, update_thr, max_per_img: the
                ``postprocess.select_candidates`` settings (``MODEL.SOLOV2.*``).
        """
        if len(num_grids) != len(strides):
            raise ValueError("SOLOv2 needs one grid, stride and scale range per instance level; PlainDecoder got "
                             f"{len(num_grids)} grids and {len(strides)} strides")
        self.num_grids = [int(s) for s in num_grids]
        self.strides = [int(s) for s in strides]
        self.args = {
            "score_thr": score_thr,
            "mask_thr": mask_thr,
            "nms_pre": nms_pre,
            "nms_kernel": nms_kernel,
            "nms_sigma": nms_sigma,
            "update_thr": update_thr,
            "max_per_img": max_per_img,
        }

    @classmethod
    def from_config(cls, cfg):
        s = cfg.MODEL.SOLOV2
        return {
            "num_grids": s.NUM_GRIDS,
            "strides": s.FPN_INSTANCE_STRIDES,
            "score_thr": s.SCORE_THR,
            "mask_thr": s.MASK_THR,
            "nms_pre": s.NMS_PRE,
            "nms_kernel": s.NMS_KERNEL,
            "nms_sigma": s.NMS_SIGMA,
            "update_thr": s.UPDATE_THR,
            "max_per_img": s.MAX_PER_IMG,
        }

    @property
    def score_thr(self) -> float:
        return float(self.args["score_thr"])

    @property
    def mask_thr(self) -> float:
        return float(self.args["mask_thr"])

    def __call__(self, image: ImageHeads, **overrides) -> Instances:
        """Instances (pred_masks (K, oh, ow) bool, scores, pred_classes, pred_boxes) of one image;
        ``overrides`` replace settings of ``__init__`` for this call (e.g. score_thr, max_per_img)."""
        args = dict(self.args, **overrides)
        device = image.mask_feats.device
        num_classes = image.cate_logits[0].shape[0]
        strides = torch.cat(
            [torch.full((s * s,), float(st), device=device) for s, st in zip(self.num_grids, self.strides)]
        )
        # Point NMS on each level's (C, S, S) probability maps, then all cells of all levels: (A, C).
        cate_probs = torch.cat(
            [point_nms(c.sigmoid()).permute(1, 2, 0).reshape(-1, num_classes) for c in image.cate_logits]
        )
        kernels = torch.cat([k.flatten(1).t() for k in image.kernels])
        cands = select_candidates(cate_probs, kernels, strides, image.mask_feats, **args)
        return candidates_to_instances(cands, image.image_hw, image.output_hw, args["mask_thr"])
