"""Click-to-mask with a trained model on images in memory: :class:`PointPredictor`.

detectron2's ``DefaultPredictor`` conventions: the model is built from the config, ``MODEL.WEIGHTS`` loaded
(through the checked checkpointer: a checkpoint of another model is an error), eval mode, the test-time
transform of the config, the image given in ``INPUT.FORMAT``. The clicks go the way of the pseudo-label
export (``train_net.py --eval-only`` with a ``configs/pseudo/`` config): :class:`WSSISDatasetMapper`
resizes the image and converts the clicks (``map_image``, ``point_annotations_to_instances``; no resize
with ``INPUT.TILE.SIZE`` > 0: the model tiles the image itself), and the model's point decoder
(``MODEL.WSSIS.PSEUDO_LABEL_MODE``: adaptive by default, or fixed) picks a mask per click. One forward
pass per image (per tile hosting clicks with tiles), never per click. With a MaskRefineNet the masks are
refined by :meth:`MaskRefineNet.refine`, the method the pipeline's refinement stage runs per image.

Shape shorthand: N clicks, (H, W) the image. Coordinates: continuous pixel coordinates of the image,
pixel (row i, col j) has centre (j + 0.5, i + 0.5), the image spans [0, W] x [0, H] (docs/DATA.md).
"""
import logging
from typing import Dict

import numpy as np
import torch

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances

from ..checkpoint_check import checked
from ..data.dataset_mapper import WSSISDatasetMapper
from ..data.images import convert_image_format
from ..mrn.build import check_trained_mrn_weights, is_mrn_config
from ..utils.errors import WSSISInputError

__all__ = ["PointPredictor", "CLICK_MODES", "check_image", "check_clicks", "per_click_instances"]

logger = logging.getLogger(__name__)

# PSEUDO_LABEL_MODEs with one output per click. "oracle_size" needs each object's true size, "threshold" (the
# SSIS baseline) ignores the clicks: neither has a per-click answer for new clicks.
CLICK_MODES = ("adaptive", "fixed")


def check_image(image, image_format: str, num_channels: int = 3) -> np.ndarray:
    """``image`` as an (H, W, C) uint8 array, or :class:`WSSISInputError` saying what was expected."""
    want = f"an (H, W, {num_channels}) uint8 numpy array in INPUT.FORMAT {image_format!r} channel order"
    if not isinstance(image, np.ndarray):
        raise WSSISInputError(f"image: expected {want}, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != num_channels or image.dtype != np.uint8:
        raise WSSISInputError(f"image: expected {want}, got shape {tuple(image.shape)} dtype {image.dtype}"
                              + (" (a grayscale image: stack it to 3 channels)" if image.ndim == 2 else ""))
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise WSSISInputError(f"image: empty image of shape {tuple(image.shape)}")
    return image


def check_clicks(points, classes, image_hw, num_classes: int):
    """``points`` as an (N, 2) float64 array and ``classes`` as (N,) int64, or :class:`WSSISInputError`
    naming the first bad click: not (x, y), not finite, outside the image (0 <= x <= W, 0 <= y <= H: the
    image spans [0, W] x [0, H], as for the importers and the export; a click on the right or bottom edge
    falls into the last pixel and grid cell), a class that is not an integer in [0, num_classes), or lengths that differ."""
    try:
        pts = np.asarray(points.cpu() if isinstance(points, torch.Tensor) else points, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise WSSISInputError(f"points: expected an (N, 2) array of (x, y) numbers ({e})") from e
    if pts.size == 0:
        pts = pts.reshape(0, 2)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise WSSISInputError(f"points: expected an (N, 2) array of (x, y) clicks, got shape {tuple(pts.shape)}")
    cls = np.asarray(classes.cpu() if isinstance(classes, torch.Tensor) else classes).reshape(-1)
    if len(cls) != len(pts):
        raise WSSISInputError(f"{len(pts)} points but {len(cls)} classes: one class per click")
    h, w = image_hw
    with np.errstate(invalid="ignore"):
        outside = ~(np.isfinite(pts).all(axis=1) & (pts[:, 0] >= 0) & (pts[:, 0] <= w) & (pts[:, 1] >= 0)
                    & (pts[:, 1] <= h))
    if outside.any():
        k = int(np.argmax(outside))
        x, y = pts[k]
        raise WSSISInputError(f"click {k} at ({x:g}, {y:g}) is outside the image ({w} x {h}: 0 <= x <= {w}, "
                              f"0 <= y <= {h}; continuous pixel coordinates, (0, 0) = top-left corner)")
    numeric = cls.dtype.kind in "iuf"  # bool, str and object arrays are not class indices
    with np.errstate(invalid="ignore"):
        bad = (np.ones(len(cls), bool) if not numeric else
               ~(np.isfinite(cls) & (cls == np.round(cls)) & (cls >= 0) & (cls < num_classes)))
    if bad.any():
        k = int(np.argmax(bad))
        raise WSSISInputError(f"click {k}: class {cls[k]!r} is not a class of the model (contiguous indices "
                              f"0..{num_classes - 1}, MODEL.SOLOV2.NUM_CLASSES {num_classes})")
    return pts, cls.astype(np.int64)


def per_click_instances(decoded: Instances, points: torch.Tensor, classes: torch.Tensor) -> Instances:
    """One row per click, in click order, from a point decoder's output (whose ``point_ids`` are click
    indices; a click the decoder gave no mask has no row there).

    Returns:
        Instances at the decoder output's size with pred_masks (N, H, W) bool, scores (N,), pred_classes
        (N,) (the click's class), pred_boxes (N, 4) XYXY, pred_levels (N,) long, pred_points (N, 2) (the
        clicks), point_ids (N,) = arange(N), no_mask (N,) bool. A click without a mask: empty mask,
        score 0, box 0, level -1, no_mask True.
    """
    n, device = len(points), decoded.pred_masks.device
    rows = decoded.point_ids.to(device)
    out = Instances(decoded.image_size)
    masks = torch.zeros((n,) + tuple(decoded.image_size), dtype=torch.bool, device=device)
    masks[rows] = decoded.pred_masks
    scores = torch.zeros(n, device=device)
    scores[rows] = decoded.scores.float()
    boxes = torch.zeros((n, 4), device=device)
    boxes[rows] = decoded.pred_boxes.tensor.float()
    levels = torch.full((n,), -1, dtype=torch.long, device=device)
    levels[rows] = decoded.pred_levels
    no_mask = torch.ones(n, dtype=torch.bool, device=device)
    no_mask[rows] = False
    out.pred_masks = masks
    out.scores = scores
    out.pred_classes = classes.to(device)
    out.pred_boxes = Boxes(boxes)
    out.pred_levels = levels
    out.pred_points = points.to(device=device, dtype=torch.float32)
    out.point_ids = torch.arange(n, device=device)
    out.no_mask = no_mask
    return out


class PointPredictor:
    """Masks of clicked objects in one image with a trained SOLOv2 (module docstring).

    Example::

        cfg = get_cfg(); add_wssis_config(cfg); cfg.merge_from_file("configs/CPU/SOLOv2_tiny.yaml")
        cfg.MODEL.WEIGHTS = "output/student/model_final.pth"
        predictor = PointPredictor(cfg)                        # or PointPredictor(cfg, mrn_cfg)
        out = predictor(cv2.imread("a.jpg"), [[120.5, 80.5], [30.0, 42.0]], [0, 2])
        out.pred_masks[1], out.scores[1], out.no_mask[1]       # the second click's mask

    Attributes:
        cfg, mrn_cfg: frozen copies of the configs.
        model, mrn: the models in eval mode (``mrn`` None without ``mrn_cfg``).
        input_format: ``INPUT.FORMAT`` the image must be in.
        num_classes: ``MODEL.SOLOV2.NUM_CLASSES``; classes are contiguous indices 0..num_classes - 1.
    """

    def __init__(self, cfg, mrn_cfg=None):
        """
        Args:
            cfg: a SOLOv2 (``WSSISSOLOv2``) config with ``MODEL.WEIGHTS``; ``MODEL.WSSIS.PSEUDO_LABEL_MODE``
                adaptive or fixed (``CLICK_MODES``), other decoder settings (MAX_PER_IMAGE, NMS_IOU,
                COLLISION_RULE, ...) as in the export; ``INPUT.TILE`` honoured.
            mrn_cfg: a MaskRefineNet config with trained ``MODEL.WEIGHTS``, or None (no refinement).

        Raises:
            WSSISInputError: a mode without per-click output, a checkpoint that does not fit the config
                (``CheckpointMismatchError``), MaskRefineNet weights without a trained decoder, or a
                class-wise MaskRefineNet built for another number of classes.
        """
        self.cfg = cfg.clone()
        self.cfg.freeze()
        mode = self.cfg.MODEL.WSSIS.PSEUDO_LABEL_MODE
        if mode not in CLICK_MODES:
            why = ("needs each clicked object's true size, which new clicks do not have"
                   if mode == "oracle_size" else
                   "ignores the clicks (SSIS baseline): it has no output per click; for plain inference "
                   "use detectron2's DefaultPredictor")
            raise WSSISInputError(f"MODEL.WSSIS.PSEUDO_LABEL_MODE {mode!r} {why}; PointPredictor takes "
                                  f"{' or '.join(CLICK_MODES)}")
        if is_mrn_config(self.cfg):
            raise WSSISInputError("cfg is a MaskRefineNet config: pass the SOLOv2 config as cfg and the "
                                  "MaskRefineNet one as mrn_cfg")
        self.model = build_model(self.cfg)
        self.model.eval()
        checked(DetectionCheckpointer(self.model)).load(self.cfg.MODEL.WEIGHTS)
        self.mapper = WSSISDatasetMapper(self.cfg, is_train=False)  # the export's test-time transform
        self.input_format = self.cfg.INPUT.FORMAT
        self.num_classes = int(self.cfg.MODEL.SOLOV2.NUM_CLASSES)
        self.mrn_cfg, self.mrn = None, None
        if mrn_cfg is not None:
            self.mrn_cfg = mrn_cfg.clone()
            self.mrn_cfg.freeze()
            if not is_mrn_config(self.mrn_cfg):
                raise WSSISInputError(f"mrn_cfg builds {self.mrn_cfg.MODEL.META_ARCHITECTURE}, not MaskRefineNet")
            check_trained_mrn_weights(self.mrn_cfg.MODEL.WEIGHTS)
            self.mrn = build_model(self.mrn_cfg)
            self.mrn.eval()
            checked(DetectionCheckpointer(self.mrn)).load(self.mrn_cfg.MODEL.WEIGHTS)
            if self.mrn.heatmap_mode == "classwise" and self.mrn.num_classes != self.num_classes:
                raise WSSISInputError(f"the MaskRefineNet has MODEL.MRN.NUM_CLASSES {self.mrn.num_classes}, the "
                                      f"SOLOv2 MODEL.SOLOV2.NUM_CLASSES {self.num_classes}: they must agree")

    def __call__(self, image: np.ndarray, points, classes) -> Instances:
        """
        Args:
            image: (H, W, C) uint8 in ``INPUT.FORMAT`` (C = 3; e.g. ``cv2.imread`` for "BGR").
            points: (N, 2) (x, y) clicks in the image's continuous pixel coordinates (list, numpy, torch).
            classes: N contiguous class indices in [0, ``num_classes``).

        Returns:
            Instances of size (H, W), one row per click in click order (:func:`per_click_instances`:
            pred_masks, scores, pred_classes, pred_boxes, pred_levels, pred_points, point_ids, no_mask);
            with a MaskRefineNet also ``refined`` (N,) bool: False where the click has no mask or the
            refined mask was empty and the coarse one was kept.

        Raises:
            WSSISInputError: an image not (H, W, C) uint8, a click outside the image, an unknown class.
        """
        return self.predict(image, points, classes)["instances"]

    def predict(self, image: np.ndarray, points, classes, keep_coarse: bool = False) -> Dict[str, object]:
        """:meth:`__call__` with the decoder's counts: {"instances", "point_stats"} (``point_stats`` as the
        export records them: num_points, num_invalid_points (0: outside clicks are refused),
        num_points_without_mask, num_collisions, num_cross_class_collisions, num_points_capped,
        num_points_retried, num_points_rescued).
        ``keep_coarse``: with a MaskRefineNet, also ``instances.coarse_masks`` (N, H, W) bool, the masks before
        refinement (the review compares them)."""
        channels = len(self.cfg.MODEL.PIXEL_MEAN)
        image = check_image(image, self.input_format, channels)
        h, w = image.shape[:2]
        pts, cls = check_clicks(points, classes, (h, w), self.num_classes)
        points_t, classes_t = torch.as_tensor(pts, dtype=torch.float32), torch.as_tensor(cls)
        stats = {"num_points": len(pts), "num_invalid_points": 0, "num_points_without_mask": len(pts),
                 "num_collisions": 0, "num_cross_class_collisions": 0, "num_points_capped": 0,
                 "num_points_retried": 0, "num_points_rescued": 0}
        if not len(pts):  # nothing to decode: no forward pass
            decoded = Instances((h, w), pred_masks=torch.zeros((0, h, w), dtype=torch.bool), scores=torch.zeros(0),
                                pred_boxes=Boxes(torch.zeros(0, 4)), pred_levels=torch.zeros(0, dtype=torch.long),
                                point_ids=torch.zeros(0, dtype=torch.long))
        else:
            # The clicks as a points image of the export: annotation id = click index, kept as point_ids.
            annos = [{"id": k, "point_coords": [[float(x), float(y)]], "point_labels": [1], "category_id": int(c),
                      "iscrowd": 0} for k, ((x, y), c) in enumerate(zip(pts, cls))]
            inputs = self.mapper.map_image({"height": h, "width": w, "label_kind": "points", "annotations": annos},
                                           image)
            with torch.no_grad():
                out = self.model([inputs])[0]
            decoded = out["instances"]
            stats.update({k: v for k, v in out["point_stats"].items() if k in stats})
        instances = per_click_instances(decoded, points_t, classes_t)
        if self.mrn is not None:
            if keep_coarse:
                instances.coarse_masks = instances.pred_masks.clone()
            instances.refined = self._refine(image, instances)
        return {"instances": instances, "point_stats": stats}

    def plain(self, image: np.ndarray) -> Instances:
        """Click-free inference of the image (ordinary SOLOv2, the model's ``MODEL.SOLOV2`` test thresholds;
        tiles as configured): Instances of size (H, W) with pred_masks (K, H, W) bool, scores, pred_classes
        (contiguous), pred_boxes. The review's orphans come from it (``wssis_d2.review``)."""
        image = check_image(image, self.input_format, len(self.cfg.MODEL.PIXEL_MEAN))
        h, w = image.shape[:2]
        inputs = self.mapper.map_image({"height": h, "width": w}, image)
        with torch.no_grad():
            return self.model([inputs])[0]["instances"]

    def _refine(self, image: np.ndarray, instances: Instances) -> torch.Tensor:
        """Refine the masks of ``instances`` in place with :meth:`MaskRefineNet.refine` (the clicks with a
        mask; the image converted to the MaskRefineNet's INPUT.FORMAT); returns ``refined`` (N,) bool."""
        refined = torch.zeros(len(instances), dtype=torch.bool, device=instances.pred_masks.device)
        has = torch.nonzero(~instances.no_mask).squeeze(1)
        if not len(has):
            return refined
        mrn_image = convert_image_format(image, self.input_format, self.mrn_cfg.INPUT.FORMAT)
        mrn_image = torch.as_tensor(np.ascontiguousarray(mrn_image.transpose(2, 0, 1)))
        masks, boxes, ok = self.mrn.refine(mrn_image, instances.pred_masks[has], instances.pred_points[has],
                                           instances.pred_classes[has], return_refined=True)
        device = instances.pred_masks.device
        instances.pred_masks[has] = masks.to(device)
        instances.pred_boxes.tensor[has] = boxes.to(device=device, dtype=instances.pred_boxes.tensor.dtype)
        refined[has] = ok.to(device)
        return refined

