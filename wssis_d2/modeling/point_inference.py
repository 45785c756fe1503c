"""Decoding strategies for point-labeled images: how ``WSSISSOLOv2`` turns head outputs + points into
pseudo-labels (METHOD.md sections 3 and 6).

The meta-architecture holds one decoder, built once from ``MODEL.WSSIS.PSEUDO_LABEL_MODE``, and calls it
for every input that carries ``"point_instances"``; inputs without points get ordinary inference
(``plain_inference.PlainDecoder``). ``DECODER_OF_MODE`` maps each mode to its decoder class (a new
decoder = a class + an entry there). A decoder takes everything it needs (strides, scale ranges,
thresholds, a ``PlainDecoder``) from its own ``from_config`` and is called as ``decoder(heads, points)``
with the ``plain_inference.ImageHeads`` of one image and its point ``Instances`` (gt_points, gt_classes,
gt_point_valid, optionally gt_point_ids, gt_sizes):

    mode        decoder                  what it does
    adaptive    PointLevelDecoder        APS: every point tried on every level, best score wins
    fixed       PointLevelDecoder        one given level for every point
    oracle_size PointLevelDecoder        the level of the true instance size (needs ``gt_sizes``)
    threshold   ScoreThresholdDecoder    SSIS baseline: points ignored, ordinary inference, score >= thr

Shape shorthand: L levels, C classes, E kernel length, (Hf, Wf) mask features = 1/4 of the padded input
(H, W); (h, w) the unpadded input image; (oh, ow) the output (original) image; M points, K outputs.

Every decoder returns ``{"instances": Instances((oh, ow)), "point_stats": dict}`` with fields
    pred_masks (K, oh, ow) bool, scores (K,), pred_classes (K,) contiguous, pred_boxes (from the masks),
    pred_points (K, 2) float: (x, y) in OUTPUT-image continuous pixels (the input points scaled by
        ow / w, oh / h; threshold mode: the centre of mass of the mask, snapped into it),
    pred_levels (K,) long: pyramid level of the mask (-1 in threshold mode: not tracked),
    point_ids (K,) long: source annotation id of the point (-1 if unknown, always -1 in threshold mode),
and ``point_stats`` = {"num_points": M, "num_invalid_points": points the mapper flagged outside the
image, "num_points_without_mask": points with no pseudo-label for any reason, invalid ones included
(None in threshold mode, where points are not used)}.

Rules of point modes: a point flagged invalid (``gt_point_valid`` False) gets no mask; a point whose
candidates are all empty gets no mask (``select_point_masks``); a mask that becomes empty when resized
to the output image is dropped (its point counts as without mask); there is no cap on pseudo-labels
per image unless ``MODEL.WSSIS.MAX_PER_IMAGE`` > 0; points (of any classes) that choose one cell follow
``MODEL.WSSIS.COLLISION_RULE`` (``point_filter.select_point_masks``). ``point_stats`` of the point modes
also has "num_collisions" (points that lost their first-choice cell to another point),
"num_cross_class_collisions" (points whose first-choice cell was also chosen by a point of another class)
and "num_points_capped" (points a MAX_PER_IMAGE cap dropped).
"""
from typing import Dict, Optional, Sequence

import numpy as np
import torch

from detectron2.config import configurable
from detectron2.structures import Boxes, Instances

from ..data.point_rules import centroid_point
from .level_choice import LEVEL_MODES, NEG_INF
from .plain_inference import ImageHeads, PlainDecoder
from .point_filter import select_point_masks
from .point_postprocess import postprocess_point_masks
from .postprocess import mask_boxes

__all__ = ["DECODER_OF_MODE", "PointLevelDecoder", "ScoreThresholdDecoder", "build_point_decoder",
           "empty_point_instances"]


def _instances(output_hw, masks, boxes, scores, classes, points, levels, point_ids) -> Instances:
    result = Instances(tuple(output_hw))
    result.pred_masks = masks
    result.scores = scores
    result.pred_classes = classes
    result.pred_boxes = Boxes(boxes)
    result.pred_points = points.reshape(-1, 2).to(torch.float32)
    result.pred_levels = levels.to(torch.long)
    result.point_ids = point_ids.to(torch.long)
    return result


def _cell_keys(selection, rows: torch.Tensor) -> torch.Tensor:
    """(K,) long key of the chosen (level, cell) of the selection rows ``rows``."""
    cell = selection.cell[rows]
    return (selection.level[rows] << 40) + (cell[:, 0] << 20) + cell[:, 1]


def empty_point_instances(output_hw, device) -> Instances:
    """Zero pseudo-labels with every field of the point decoders' output (masks (0, oh, ow))."""
    zeros = torch.zeros(0, dtype=torch.long, device=device)
    return _instances(output_hw, torch.zeros((0,) + tuple(output_hw), dtype=torch.bool, device=device),
                      torch.zeros((0, 4), device=device), torch.zeros(0, device=device), zeros,
                      torch.zeros((0, 2), device=device), zeros, zeros)


class PointLevelDecoder:
    """Point-guided pseudo-labels: one grid cell per point (modes adaptive, fixed, oracle_size)."""

    uses_points = True  # each output comes from a point (tiles: each point is decoded in one tile)

    @configurable
    def __init__(
        self,
        *,
        strides: Sequence[int],
        scale_ranges: Sequence[Sequence[float]],
        mask_thr: float,
        mode: str = "adaptive",
        fixed_level: Optional[int] = None,
        max_per_image: int = 0,
        nms_iou: Optional[float] = None,
        collision_rule: str = "reassign",
        tiny_mask_rule: str = "before",
        empty_mask_retry: bool = False,
    ):
        """
        Args:
            strides: stride per level (the mask-area filter); scale_ranges: (lo, hi) per level (mode
                "oracle_size"); mask_thr: mask probability threshold (``MODEL.SOLOV2``).
            mode: "adaptive", "fixed" or "oracle_size" (``point_filter.select_point_masks``).
            fixed_level: level index of mode "fixed".
            max_per_image: at most this many pseudo-labels per image, by score; <= 0 (default): no cap.
                Points a cap drops are logged per image and counted in ``point_stats``.
            nms_iou: class-aware mask NMS IoU between points (None: off, the default).
            collision_rule, tiny_mask_rule: see ``point_filter.select_point_masks``.
            empty_mask_retry: a point whose chosen cell gives no mask (all candidates empty, or a mask that
                vanishes at the output size) tries its other levels in decreasing score (mode "fixed" on each;
                a cell another point of the image holds is skipped), then its adaptive choice at half
                ``mask_thr``, before it counts as without a mask (``point_stats``: "num_points_retried",
                "num_points_rescued").
        """
        if mode not in LEVEL_MODES:
            raise ValueError(f"PointLevelDecoder mode must be adaptive, fixed or oracle_size, got {mode!r}")
        if mode == "fixed" and fixed_level is None:
            raise ValueError("mode 'fixed' needs fixed_level (MODEL.WSSIS.FIXED_LEVEL)")
        self.strides = [int(s) for s in strides]
        self.scale_ranges = [tuple(r) for r in scale_ranges]
        self.mask_thr = float(mask_thr)
        self.mode = mode
        self.fixed_level = fixed_level
        self.max_per_image = int(max_per_image)
        self.nms_iou = nms_iou
        self.collision_rule = collision_rule
        self.tiny_mask_rule = tiny_mask_rule
        self.empty_mask_retry = bool(empty_mask_retry)

    @classmethod
    def from_config(cls, cfg):
        w, s = cfg.MODEL.WSSIS, cfg.MODEL.SOLOV2
        return {
            "strides": s.FPN_INSTANCE_STRIDES,
            "scale_ranges": s.FPN_SCALE_RANGES,
            "mask_thr": s.MASK_THR,
            "mode": w.PSEUDO_LABEL_MODE,
            "fixed_level": w.FIXED_LEVEL,
            "max_per_image": w.MAX_PER_IMAGE,
            "nms_iou": w.NMS_IOU if w.NMS_IOU is not None and w.NMS_IOU >= 0 else None,
            "collision_rule": w.COLLISION_RULE,
            "tiny_mask_rule": w.TINY_MASK_RULE,
            "empty_mask_retry": w.EMPTY_MASK_RETRY,
        }

    def __call__(self, heads: ImageHeads, points: Instances, max_per_image: Optional[int] = None
                 ) -> Dict[str, object]:
        """Pseudo-labels of one image (module docstring); ``max_per_image`` replaces the configured cap
        for this call (tiles: 0 per tile, the cap is applied to the whole image)."""
        device = heads.mask_feats.device
        num_points = len(points)
        valid = points.gt_point_valid.to(device=device, dtype=torch.bool)
        ids = points.gt_point_ids if points.has("gt_point_ids") else torch.full((num_points,), -1)
        gt_sizes = None
        if self.mode == "oracle_size":
            if not points.has("gt_sizes"):
                raise ValueError(
                    "Pseudo-label mode 'oracle_size' needs each point's true instance size (point_instances.gt_sizes, "
                    "from a 'bbox' on the point annotations). Use a points set registered with a "
                    "points_gt_dataset, or a dataset with masks, through wssis_d2.pseudo.build_pseudo_label_loader."
                )
            gt_sizes = points.gt_sizes.to(device)[valid]
        pts = points.gt_points.to(device)[valid]
        classes = points.gt_classes.to(device)[valid]
        cap = self.max_per_image if max_per_image is None else int(max_per_image)
        selection, labels, boxes = self._decode(heads, pts, classes, gt_sizes, self.mode, self.fixed_level,
                                                self.mask_thr, max_per_image=cap)
        keep = boxes[:, 2] > 0  # a mask can vanish when resized to the output size
        rows, masks, boxes = labels.indices[keep], labels.masks[keep], boxes[keep]
        scores, out_classes, levels = labels.scores[keep], labels.classes[keep], labels.levels[keep]
        retried = rescued = 0
        if self.empty_mask_retry and self.mode != "oracle_size":
            missing = torch.ones(len(pts), dtype=torch.bool, device=device)
            if labels.num_capped:  # a valid point left out was capped (or tiny, rule "after"): dropped on purpose
                missing = ~selection.valid.to(device)
                missing[labels.indices] = True  # post-processed: kept, or vanished at the output size
            missing[rows] = False
            held = _cell_keys(selection, rows)
            extra = self._retry(heads, pts, classes, torch.nonzero(missing).squeeze(1), held)
            retried = int(missing.sum())
            if extra is not None:
                rescued = len(extra[0])
                order = torch.argsort(torch.cat([rows, extra[0]]))
                rows, masks, boxes, scores, out_classes, levels = (
                    torch.cat([a, b])[order] for a, b in zip((rows, masks, boxes, scores, out_classes, levels), extra))
        (h, w), (oh, ow) = heads.image_hw, heads.output_hw
        # Input pixels -> output pixels: both continuous coordinates spanning the whole image.
        out_points = pts[rows] * pts.new_tensor([ow / w, oh / h])
        instances = _instances(heads.output_hw, masks, boxes, scores, out_classes, out_points, levels,
                               ids.to(device)[valid][rows])
        stats = {
            "num_points": num_points,
            "num_invalid_points": int((~valid).sum()),
            "num_points_without_mask": num_points - len(instances),
            "num_collisions": int(selection.collided.sum()),
            "num_cross_class_collisions": int(selection.cross_class.sum()),
            "num_points_capped": labels.num_capped,
            "num_points_retried": retried,
            "num_points_rescued": rescued,
        }
        return {"instances": instances, "point_stats": stats}

    def _decode(self, heads: ImageHeads, pts, classes, gt_sizes, mode, level, mask_thr, max_per_image=0,
                prune=True):
        """(selection, post-processed labels, (K, 4) boxes of their masks: x1 = 0 where a mask vanished at the
        output size)."""
        selection = select_point_masks(
            heads.cate_logits, heads.kernels, heads.mask_feats, pts, classes, heads.input_hw, self.strides,
            mode=mode, level=level, gt_sizes=gt_sizes, scale_ranges=self.scale_ranges, mask_thr=mask_thr,
            collision_rule=self.collision_rule, tiny_mask_rule=self.tiny_mask_rule, prune=prune)
        labels = postprocess_point_masks(
            selection, classes, self.strides, heads.input_hw, heads.image_hw, heads.output_hw, mask_thr=mask_thr,
            nms_iou=self.nms_iou, max_per_image=max_per_image)
        return selection, labels, mask_boxes(labels.masks)

    def _retry(self, heads: ImageHeads, pts, classes, idx, held):
        """Masks for the points ``idx`` (M',) that got none (``empty_mask_retry``); ``held``: (level, cell)
        keys of the cells other points keep. Loops over levels and ranks (<= L x L small calls on the few
        points concerned), never over points.

        Returns:
            None, or (rows, masks, boxes, scores, classes, levels) of the rescued points, rows into ``pts``.
        """
        if not len(idx):
            return None
        found = []
        sub_pts, sub_cls = pts[idx], classes[idx]
        scores = self._decode(heads, sub_pts, sub_cls, None, "adaptive", None, self.mask_thr, prune=False)[0].level_scores
        ranked = torch.argsort(torch.nan_to_num(scores, nan=NEG_INF), dim=1, descending=True)  # (M', L)
        todo = torch.ones(len(idx), dtype=torch.bool, device=idx.device)
        for rank in range(ranked.shape[1]):
            for level in range(ranked.shape[1]):
                sel = todo & (ranked[:, rank] == level) & torch.isfinite(scores[:, level]) & (scores[:, level] > 0)
                if sel.any():
                    found.append(self._try(heads, sub_pts, sub_cls, torch.nonzero(sel).squeeze(1), "fixed", level,
                                           self.mask_thr, held, todo))
        if todo.any():  # then the adaptive choice at half the mask threshold
            found.append(self._try(heads, sub_pts, sub_cls, torch.nonzero(todo).squeeze(1), "adaptive", None,
                                   self.mask_thr / 2, held, todo))
        found = [f for f in found if f is not None]
        if not found:
            return None
        parts = [torch.cat(x) for x in zip(*found)]
        parts[0] = idx[parts[0]]
        return tuple(parts)

    def _try(self, heads, pts, classes, sel, mode, level, mask_thr, held, todo):
        """One retry of the points ``sel``; the ones that get a mask on a cell nobody holds are marked done in
        ``todo`` and returned as (rows into ``pts``, masks, boxes, scores, classes, levels)."""
        selection, labels, boxes = self._decode(heads, pts[sel], classes[sel], None, mode, level, mask_thr)
        r = labels.indices
        keep = (boxes[:, 2] > 0) & ~torch.isin(_cell_keys(selection, r), held)
        if not keep.any():
            return None
        rows = sel[r[keep]]
        todo[rows] = False
        return (rows, labels.masks[keep], boxes[keep], labels.scores[keep], labels.classes[keep],
                labels.levels[keep])


class ScoreThresholdDecoder:
    """SSIS baseline ("+unlabeled"): ordinary inference, points ignored, detections with score >= thr."""

    uses_points = False  # tiles: decoded on every tile, duplicates across tiles merged like plain inference

    @configurable
    def __init__(self, *, plain_decoder: PlainDecoder, threshold: float = 0.1, max_per_image: int = 100):
        """
        Args:
            plain_decoder: the ordinary inference (``MODEL.SOLOV2`` settings).
            threshold: keep detections whose final score (after Matrix NMS) is >= this.
            max_per_image: detections kept per image (replaces ``MODEL.SOLOV2.MAX_PER_IMG``).
        """
        self.plain_decoder = plain_decoder
        self.threshold = float(threshold)
        self.max_per_image = int(max_per_image)

    @classmethod
    def from_config(cls, cfg):
        w = cfg.MODEL.WSSIS
        # Ordinary inference: MAX_PER_IMAGE when set, else detectron2-style MODEL.SOLOV2.MAX_PER_IMG.
        return {"plain_decoder": PlainDecoder(cfg), "threshold": w.THRESHOLD,
                "max_per_image": w.MAX_PER_IMAGE if w.MAX_PER_IMAGE > 0 else cfg.MODEL.SOLOV2.MAX_PER_IMG}

    def __call__(self, heads: ImageHeads, points: Instances) -> Dict[str, object]:
        # The class-probability prefilter must not cut scores the threshold would keep.
        score_thr = min(self.plain_decoder.score_thr, self.threshold)
        plain = self.plain_decoder(heads, score_thr=score_thr, max_per_img=self.max_per_image)
        boxes = mask_boxes(plain.pred_masks)
        keep = (plain.scores >= self.threshold) & (boxes[:, 2] > 0)
        plain, boxes = plain[keep], boxes[keep]
        masks = plain.pred_masks
        # No clicked point here: each mask gets its centre of mass (snapped into the mask) as its point.
        centres = [centroid_point(m) for m in masks.cpu().numpy()]
        num = len(plain)
        instances = _instances(
            heads.output_hw,
            masks,
            boxes,
            plain.scores,
            plain.pred_classes,
            torch.tensor(np.asarray(centres, dtype=np.float32).reshape(-1, 2), device=masks.device),
            torch.full((num,), -1, dtype=torch.long, device=masks.device),
            torch.full((num,), -1, dtype=torch.long, device=masks.device),
        )
        return {"instances": instances, "point_stats": self.stats(points)}

    @staticmethod
    def stats(points: Instances) -> Dict[str, object]:
        """``point_stats`` of an image: the points are counted, not used."""
        return {
            "num_points": len(points),
            "num_invalid_points": int((~points.gt_point_valid.bool()).sum()),
            "num_points_without_mask": None,
        }


# PSEUDO_LABEL_MODE -> decoder class (the one dispatch; a level-choice mode is passed on as ``mode``).
DECODER_OF_MODE = {
    "adaptive": PointLevelDecoder,
    "fixed": PointLevelDecoder,
    "oracle_size": PointLevelDecoder,
    "threshold": ScoreThresholdDecoder,
}


def build_point_decoder(cfg):
    """The decoder of ``cfg.MODEL.WSSIS.PSEUDO_LABEL_MODE`` (see ``DECODER_OF_MODE``)."""
    mode = cfg.MODEL.WSSIS.PSEUDO_LABEL_MODE
    if mode not in DECODER_OF_MODE:
        raise ValueError(f"Unknown MODEL.WSSIS.PSEUDO_LABEL_MODE {mode!r}; choose one of {sorted(DECODER_OF_MODE)}")
    return DECODER_OF_MODE[mode](cfg)
