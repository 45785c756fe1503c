"""MRN evaluation: does refinement improve the coarse masks of held-out samples?

For every sample the refined mask is built exactly as the refinement stage builds it (paste the crop
probabilities back with :func:`wssis_d2.mrn.paste.paste_masks`, threshold, keep the coarse mask when
the refined one is empty: :func:`wssis_d2.mrn.paste.merge_refined`) and compared with the target at
full image resolution.
"""
import itertools
import logging
from collections import OrderedDict

import numpy as np
import torch

import detectron2.utils.comm as comm
from detectron2.evaluation import DatasetEvaluator

from ..data.coco_masks import decode_segmentation
from .paste import merge_refined, paste_masks

__all__ = ["MRNEvaluator"]

logger = logging.getLogger(__name__)


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    union = (a | b).sum().item()
    return (a & b).sum().item() / union if union else 1.0


class MRNEvaluator(DatasetEvaluator):
    """Mean IoU (in %) of coarse and refined masks against the targets, full image resolution.

    Inputs: the dicts of :class:`MRNDatasetMapper` at inference (with "annotations", "crop_box",
    "height", "width"); outputs: :meth:`MaskRefineNet.forward` at inference ({"mask_prob"}).

    Results ``{"mrn": {"mIoU_coarse", "mIoU_refined", "mIoU_gain", "improved_pct", "kept_coarse_pct",
    "num_samples"}}``: ``improved_pct`` = samples whose IoU went up, ``kept_coarse_pct`` = samples
    whose refined mask was empty (the coarse one is kept).
    """

    def __init__(self, mask_threshold: float = 0.5, distributed: bool = True):
        self.mask_threshold = mask_threshold
        self.distributed = distributed
        self.reset()

    def reset(self):
        self._rows = []  # (iou coarse, iou refined, refined mask non-empty)

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            h, w = inp["height"], inp["width"]
            (ann,) = inp["annotations"]
            coarse = torch.from_numpy(decode_segmentation(ann["segmentation"], h, w))
            gt = torch.from_numpy(decode_segmentation(ann["gt_segmentation"], h, w))
            prob = out["mask_prob"].detach().float().cpu()[None]
            refined = paste_masks(prob, inp["crop_box"].reshape(1, 4), (h, w), self.mask_threshold)
            final, _ = merge_refined(coarse[None], refined)
            self._rows.append((_iou(coarse, gt), _iou(final[0], gt), bool(refined.any())))

    def evaluate(self):
        rows = self._rows
        if self.distributed:
            comm.synchronize()
            rows = list(itertools.chain(*comm.gather(rows, dst=0)))
            if not comm.is_main_process():
                return {}
        if not rows:
            logger.warning("MRNEvaluator received no samples")
            return {}
        arr = np.asarray(rows, dtype=np.float64)
        res = OrderedDict(
            mIoU_coarse=100 * arr[:, 0].mean(),
            mIoU_refined=100 * arr[:, 1].mean(),
            mIoU_gain=100 * (arr[:, 1] - arr[:, 0]).mean(),
            improved_pct=100 * (arr[:, 1] > arr[:, 0]).mean(),
            kept_coarse_pct=100 * (1 - arr[:, 2]).mean(),
            num_samples=len(rows),
        )
        logger.info("MRN evaluation on {} samples: mIoU coarse {:.2f} -> refined {:.2f}".format(
            len(rows), res["mIoU_coarse"], res["mIoU_refined"]))
        return OrderedDict(mrn=res)
