"""Training on tiles (``INPUT.TILE``): the augmentations that cut a random tile from an image at its own
resolution and scale it, and the rule for instances the tile cuts.

With ``INPUT.TILE.SIZE`` > 0 the training augmentations are detectron2's (``build_augmentation``) without
its ``ResizeShortestEdge``, then ``RandomTileCrop`` (a SIZE x SIZE window at a random position; a side
shorter than SIZE is kept whole) and ``ScaleBy`` (SCALE times a factor drawn from TRAIN_SCALE_RANGE).
At inference there is no augmentation: the model covers the image with tiles itself
(``wssis_d2.modeling.tiled_inference``), at the same SCALE.

Instances cut by the tile keep their visible part (masks are cropped, boxes recomputed from them). An
instance whose visible part cannot be a SOLOv2 target, i.e. whose mask is empty at the mask-feature
resolution (``modeling.targets.downsample_masks``: no 4 x 4 block at least half covered), is dropped and
counted (``TinyInstanceFilter``).
"""
import logging
from typing import List, Sequence

import numpy as np

from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import Instances
from detectron2.utils.logger import log_every_n_seconds

from ..modeling.targets import downsample_masks
from ..modeling.tiling import check_tile_settings

__all__ = ["RandomTileCrop", "ScaleBy", "build_tile_augmentation", "TinyInstanceFilter", "tiles_enabled",
           "MASK_STRIDE"]

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
    return augs + [RandomTileCrop(t.SIZE), ScaleBy(t.SCALE * lo, t.SCALE * hi)]


def crop_of(transforms: Sequence[T.Transform]):
    """The ``CropTransform`` of a transform list, or None."""
    for tfm in getattr(transforms, "transforms", transforms):
        if isinstance(tfm, T.CropTransform):
            return tfm
    return None


class TinyInstanceFilter:
    """Drops instances whose visible mask is empty at the mask-feature resolution; counts them
    (``num_dropped``, ``num_seen``, per process) and logs the running count."""

    def __init__(self):
        self.num_dropped = 0
        self.num_seen = 0

    def __call__(self, instances: Instances, file_name: str = "") -> Instances:
        """``instances`` with BitMasks ``gt_masks`` (N, H, W) -> the representable ones."""
        if not len(instances):
            return instances
        masks = instances.gt_masks.tensor
        keep = downsample_masks(masks, MASK_STRIDE).flatten(1).any(dim=1)
        self.num_seen += len(instances)
        dropped = int((~keep).sum())
        if dropped:
            self.num_dropped += dropped
            log_every_n_seconds(
                logging.INFO,
                f"tiles: dropped {self.num_dropped} of {self.num_seen} instances so far in this process whose "
                f"visible part is too small for a {MASK_STRIDE}x{MASK_STRIDE} mask target (last: {dropped} in a "
                f"tile of {file_name})", n=30, name=__name__)
        return instances[keep]
