"""Microscopy metrics of COCO-style instances: a model's predictions (a detectron2 ``DatasetEvaluator``) and
pseudo-label jsons, both against the true masks of a COCO json (metrics: :mod:`.microscopy`).

Both sides are painted into label images first (:func:`~.microscopy.rles_to_label_image`): the true masks in
descending area (a small object stays visible on a large one), the predictions in ascending score (the higher
score wins a shared pixel; equal scores: the later one). Crowd annotations (``iscrowd`` 1) are not reference
objects, and a prediction on one is an ordinary false positive. Objects hidden entirely by others are not
scored; their number is logged.

A model's detections count when their score is >= ``TEST.WSSIS_COUNT_SCORE_THR`` (0.5 by default): a fixed
rule, not tuned on any set. Pseudo-labels all count (one per click, or every detection the threshold
baseline kept).
"""
import itertools
import logging
from collections import defaultdict
from typing import Dict, Mapping, Sequence, Tuple

import numpy as np

import detectron2.utils.comm as comm
from detectron2.evaluation import DatasetEvaluator

from ..data.coco_masks import rle_areas
from .microscopy import image_counts, masks_to_label_image, rles_to_label_image, summarize

__all__ = ["MicroscopyEvaluator", "gt_label_image", "annotation_microscopy"]

logger = logging.getLogger(__name__)


def gt_label_image(coco_api, image_id: int) -> Tuple[np.ndarray, int]:
    """(the (H, W) label image of the non-crowd true masks of ``image_id``, their number) from a pycocotools
    ``COCO`` (polygons and RLE alike, through ``annToRLE``)."""
    img = coco_api.imgs[image_id]
    anns = [a for a in coco_api.imgToAnns.get(image_id, []) if not a.get("iscrowd", 0)]
    rles = [coco_api.annToRLE(a) for a in anns]
    areas = np.asarray(rle_areas(rles), dtype=np.float64)
    return rles_to_label_image(rles, img["height"], img["width"], -areas), len(anns)


def _log_hidden(where: str, hidden: Mapping[str, int]) -> None:
    if any(hidden.values()):
        logger.warning(f"{where}: painted into label images, {hidden['true']} true and {hidden['pred']} predicted "
                       "objects were hidden entirely by other objects and are not scored")


def annotation_microscopy(coco_gt, annotations: Sequence[dict], image_ids: Sequence[int],
                          where: str = "pseudo-labels") -> Dict[str, float]:
    """Microscopy metrics (``microscopy.summarize``) of COCO annotations with RLE ``segmentation`` (and an
    optional ``score``: painting priority, default 1) on the images ``image_ids`` of ``coco_gt`` (a ``COCO``)."""
    by_image = defaultdict(list)
    for a in annotations:
        by_image[a["image_id"]].append(a)
    counts, hidden = [], {"true": 0, "pred": 0}
    for image_id in image_ids:
        true, n_true = gt_label_image(coco_gt, image_id)
        anns = by_image.get(image_id, [])
        pred = rles_to_label_image([a["segmentation"] for a in anns], *true.shape,
                                   [float(a.get("score", 1.0)) for a in anns])
        c = image_counts(true, pred)
        hidden["true"] += n_true - c["n_true"]
        hidden["pred"] += len(anns) - c["n_pred"]
        counts.append(c)
    _log_hidden(where, hidden)
    return summarize(counts)


class MicroscopyEvaluator(DatasetEvaluator):
    """Microscopy metrics of a model's predictions on a COCO dataset (module docstring: painting, score rule).

    ``evaluate()`` returns ``{"microscopy": {metric: float}}``: ``microscopy.METRIC_KEYS`` (NaN where
    undefined), the counts of ``microscopy.summarize`` and "score_thr". Use it beside detectron2's
    ``COCOEvaluator`` in ``DatasetEvaluators``.
    """

    def __init__(self, dataset_name: str, coco_api, score_thr: float = 0.5, distributed: bool = True):
        """
        Args:
            dataset_name: for the log.
            coco_api: the true masks (a pycocotools ``COCO``, e.g. ``COCOEvaluator._coco_api``).
            score_thr: detections with a score >= this count.
            distributed: gather the counts of all ranks.
        """
        self._name = dataset_name
        self._coco = coco_api
        self._score_thr = float(score_thr)
        self._distributed = distributed
        self.reset()

    def reset(self):
        self._counts = []
        self._hidden = {"true": 0, "pred": 0}

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            image_id = inp["image_id"]
            true, n_true = gt_label_image(self._coco, image_id)
            instances = out["instances"].to("cpu")
            keep = instances.scores >= self._score_thr
            masks, scores = instances.pred_masks[keep], instances.scores[keep]
            if tuple(masks.shape[-2:]) != true.shape and len(masks):
                raise ValueError(f"{self._name}, image {image_id}: predicted masks are {tuple(masks.shape[-2:])}, "
                                 f"the image is {true.shape} in the dataset json")
            pred = (masks_to_label_image(masks, scores.tolist()) if len(masks)
                    else np.zeros(true.shape, dtype=np.int32))
            c = image_counts(true, pred)
            self._hidden["true"] += n_true - c["n_true"]
            self._hidden["pred"] += len(masks) - c["n_pred"]
            self._counts.append(c)

    def evaluate(self):
        counts, hidden = self._counts, [self._hidden]
        if self._distributed:
            comm.synchronize()
            gathered = comm.gather((counts, self._hidden), dst=0)
            if not comm.is_main_process():
                return {}
            counts = list(itertools.chain(*(c for c, _ in gathered)))
            hidden = [h for _, h in gathered]
        _log_hidden(self._name, {k: sum(h[k] for h in hidden) for k in ("true", "pred")})
        scores = summarize(counts)
        logger.info(f"{self._name}: microscopy metrics (detections with score >= {self._score_thr:g}): "
                    + ", ".join(f"{k} {v:.4f}" for k, v in scores.items() if not k.startswith("num_")))
        return {"microscopy": {**{k: float(v) for k, v in scores.items()}, "score_thr": self._score_thr}}
