"""Training on tiles (``INPUT.TILE``): the augmentations that cut a random tile from an image at its own
resolution and scale it, and the rule for instances the tile cuts.

With ``INPUT.TILE.SIZE`` > 0 the training augmentations are, in this order:

1. ``RandomTileCrop``: a SIZE x SIZE window at a random position of the image at its own resolution (a
   side shorter than SIZE is kept whole);
2. detectron2's ``build_augmentation`` without its ``ResizeShortestEdge`` (``RandomFlip`` by default), on
   the tile;
3. ``ScaleBy``: SCALE times a factor drawn uniformly from TRAIN_SCALE_RANGE (multi-scale training around
   the tile scale, as MIN_SIZE_TRAIN does for whole images).

At inference there is no augmentation: the model covers the image with tiles itself
(``wssis_d2.modeling.tiled_inference``), at SCALE.

Which instances a training tile keeps does not depend on that order: an annotation is decoded when its box,
mapped through the *whole* transform list (``annotations_in_view``), meets the output image; the mask is then
transformed with the image, so what is kept is what is visible. Rule for instances cut by the tile border:
an instance keeps its visible part (masks cropped, boxes recomputed from them) when that part can be a SOLOv2
target, i.e. its mask is not empty at the mask-feature resolution (``modeling.targets.downsample_masks``: at
least one 4 x 4 block of the model input at least half covered, ~8 input pixels); a visible part below that
is dropped and counted (``TinyInstanceFilter``). An instance with no pixel in the tile is out of view, not
dropped.
"""
import logging
from typing import List, Sequence

import numpy as np

from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import BoxMode, Instances
from detectron2.utils.logger import log_every_n_seconds

from ..modeling.targets import downsample_masks
from ..modeling.tiling import check_tile_settings

__all__ = ["RandomTileCrop", "ScaleBy", "build_tile_augmentation", "TinyInstanceFilter", "tiles_enabled",
           "annotations_in_view", "MASK_STRIDE"]

logger = logging.getLogger(__name__)

# Stride of SOLOv2's mask features (and of the Dice targets) relative to the model input.
MASK_STRIDE = 4


def tiles_enabled(cfg) -> bool:
    """Whether ``cfg`` trains and infers on tiles (``INPUT.TILE.SIZE`` > 0; plain detectron2 configs: no)."""
    tile = cfg.INPUT.get("TILE", None)
    return bool(tile is not None and tile.SIZE > 0)


class RandomTileCrop(T.Augmentation):
    """A ``size`` x ``size`` crop at a uniformly random position (a shorter side is kept whole).

    Not a subclass of detectron2's ``RandomCrop``: ``WSSISDatasetMapper`` refuses user crops
    (``INPUT.CROP``) and accepts this one, used on fully-labelled training images only."""

    def __init__(self, size: int):
        super().__init__()
        self.size = int(size)

    def get_transform(self, image):
        h, w = image.shape[:2]
        ch, cw = min(self.size, h), min(self.size, w)
        y0 = int(np.random.randint(h - ch + 1))
        x0 = int(np.random.randint(w - cw + 1))
        return T.CropTransform(x0, y0, cw, ch)


class ScaleBy(T.Augmentation):
    """Resize by a factor drawn uniformly from [min_scale, max_scale] (sides rounded, at least 1 px)."""

    def __init__(self, min_scale: float, max_scale: float):
        super().__init__()
        self.min_scale, self.max_scale = float(min_scale), float(max_scale)

    def get_transform(self, image):
        h, w = image.shape[:2]
        s = float(np.random.uniform(self.min_scale, self.max_scale)) if self.max_scale > self.min_scale \
            else self.min_scale
        nh, nw = max(1, int(round(h * s))), max(1, int(round(w * s)))
        if (nh, nw) == (h, w):
            return T.NoOpTransform()
        return T.ResizeTransform(h, w, nh, nw)


def build_tile_augmentation(cfg, is_train: bool) -> List[T.Augmentation]:
    """The augmentations of tile mode (module docstring); ``cfg.INPUT.TILE`` is checked first."""
    t = cfg.INPUT.TILE
    check_tile_settings(t.SIZE, t.OVERLAP, t.SCALE, scale_range=t.TRAIN_SCALE_RANGE)
    if not is_train:
        return []  # the model tiles the image at its own resolution
    augs = [a for a in utils.build_augmentation(cfg, is_train) if not isinstance(a, T.ResizeShortestEdge)]
    lo, hi = (float(v) for v in t.TRAIN_SCALE_RANGE)
    # Crop first, at the image's own resolution: the flip (and any other augmentation) then acts on the tile.
    return [RandomTileCrop(t.SIZE)] + augs + [ScaleBy(t.SCALE * lo, t.SCALE * hi)]


def annotations_in_view(annotations: Sequence[dict], transforms: T.TransformList, out_hw) -> np.ndarray:
    """Which annotations can be visible in the augmented image: their box, mapped through every transform
    of ``transforms`` (in order: crop, flip, scale, whatever the list holds), meets the output image.

    Args:
        annotations: detectron2 annotation dicts with ``bbox`` (and ``bbox_mode``; XYWH_ABS when absent),
            in the stored image's pixels. One without ``bbox`` is kept (it cannot be tested).
        transforms: the transforms applied to the image.
        out_hw: (H', W') of the augmented image.

    Returns:
        (N,) bool: True where the transformed box has a positive-area intersection with [0, W'] x [0, H'].
    """
    n = len(annotations)
    keep = np.ones(n, dtype=bool)
    has_box = np.array([a.get("bbox") is not None for a in annotations], dtype=bool)
    if not has_box.any():
        return keep
    boxes = np.array([BoxMode.convert(list(a["bbox"]), a.get("bbox_mode", BoxMode.XYWH_ABS), BoxMode.XYXY_ABS)
                      for a in annotations if a.get("bbox") is not None], dtype=np.float64).reshape(-1, 4)
    boxes = transforms.apply_box(boxes)  # (K, 4) XYXY in the output image; flips reorder x0 / x1 themselves
    h, w = out_hw
    iw = np.minimum(boxes[:, 2], w) - np.maximum(boxes[:, 0], 0)
    ih = np.minimum(boxes[:, 3], h) - np.maximum(boxes[:, 1], 0)
    keep[has_box] = (iw > 0) & (ih > 0)
    return keep


class TinyInstanceFilter:
    """Drops instances whose visible mask is empty at the mask-feature resolution (module docstring); counts
    those with visible pixels (``num_dropped`` of ``num_seen`` visible ones, per process) and logs the running
    count. Instances with no visible pixel (a box that meets the tile, a mask that does not) are out of view:
    removed, not counted as dropped."""

    def __init__(self):
        self.num_dropped = 0
        self.num_seen = 0

    def __call__(self, instances: Instances, file_name: str = "") -> Instances:
        """``instances`` with BitMasks ``gt_masks`` (N, H, W) -> the representable ones."""
        if not len(instances):
            return instances
        masks = instances.gt_masks.tensor
        visible = masks.flatten(1).any(dim=1)
        keep = downsample_masks(masks, MASK_STRIDE).flatten(1).any(dim=1)
        self.num_seen += int(visible.sum())
        dropped = int((visible & ~keep).sum())
        if dropped:
            self.num_dropped += dropped
            log_every_n_seconds(
                logging.INFO,
                f"tiles: dropped {self.num_dropped} of {self.num_seen} instances so far in this process whose "
                f"visible part is too small for a {MASK_STRIDE}x{MASK_STRIDE} mask target (last: {dropped} in a "
                f"tile of {file_name})", n=30, name=__name__)
        return instances[keep]
