"""Dataset mapper for MaskRefineNet: one sample dict (see :mod:`wssis_d2.mrn.datasets`) -> one crop.

The crop box and the network inputs come from the functions the refinement stage uses
(:func:`wssis_d2.mrn.boxes.crop_boxes`, :func:`wssis_d2.mrn.inputs.make_mrn_inputs`); only the box
scale differs: uniform per sample in ``MODEL.MRN.TRAIN_BOX_SCALE_RANGE`` while training (drawn from
torch's global RNG, which detectron2 seeds per data-loader worker), ``MODEL.MRN.BOX_SCALE`` otherwise.
"""
import copy
from typing import Optional, Sequence, Union

import numpy as np
import torch

from detectron2.config import configurable
from detectron2.structures import BitMasks

from ..data.coco_masks import decode_segmentation
from ..data.images import BadImageSkipper, read_image
from .boxes import crop_boxes
from .inputs import make_mrn_inputs

__all__ = ["MRNDatasetMapper", "read_mrn_image"]


def read_mrn_image(file_name: str, image_format: str, image_id=None) -> torch.Tensor:
    """(3, H, W) uint8 image in ``image_format`` channel order (e.g. "BGR", "RGB").

    :func:`wssis_d2.data.images.read_image` (the teacher's loader too): it applies the EXIF orientation, so
    that the image is in the frame the pseudo-labels were predicted in; ``WSSISInputError`` naming the file
    and ``image_id`` when it cannot be read.
    """
    image = read_image(file_name, image_format, image_id)
    return torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))


class MRNDatasetMapper:
    """Maps one MRN sample to the network input dict :meth:`MaskRefineNet.forward` takes.

    Output: "image" (3, S, S) float (pixel values, not normalised), "heatmap" (1, S, S) float (the
    point's Gaussian; with the class-wise heatmap the model expands it by "classes"), "classes" ()
    long contiguous class index, "coarse_mask" (1, S, S) float {0, 1}, "gt_mask" (S, S) bool,
    "crop_box" (4,) float (x0, y0, x1, y1) image coordinates, and "file_name", "image_id",
    "sample_id", "height", "width". At inference the sample's "annotations" stay in the dict (the
    evaluator compares full-resolution masks).

    Augmentation while training: a horizontal flip of the whole crop (image, heatmap, masks) with
    probability 0.5 when INPUT.RANDOM_FLIP is "horizontal" (a vertical flip when "vertical").
    """

    @configurable
    def __init__(
        self,
        is_train: bool = True,
        *,
        image_format: str,
        crop_size: int,
        heatmap_mode: str,
        heatmap_sigma: float,
        num_classes: int,
        box_scale: Union[float, Sequence[float]],
        point_margin: float = 1.0,
        empty_box_size: float = 32.0,
        flip: Optional[str] = None,
        skip_bad_images: bool = False,
    ):
        """
        Args:
            is_train: training (random box scale, flips, "gt_mask") or inference.
            image_format: INPUT.FORMAT.
            crop_size, heatmap_mode, heatmap_sigma, num_classes, point_margin, empty_box_size: as in
                :class:`MaskRefineNet`.
            box_scale: a float, or a (lo, hi) range drawn uniformly per sample.
            flip: None, "horizontal" or "vertical" (probability 0.5).
            skip_bad_images: training only: an unreadable image is skipped with a warning and a count
                (``None`` returned: detectron2's ``MapDataset`` draws another sample); else it raises.
        """
        if flip not in (None, "none", "horizontal", "vertical"):
            raise ValueError(f"Unknown flip {flip!r}")
        self.is_train = is_train
        self.image_format = image_format
        self.crop_size = crop_size
        self.heatmap_mode = heatmap_mode
        self.heatmap_sigma = heatmap_sigma
        self.num_classes = num_classes
        self.box_scale = tuple(box_scale) if isinstance(box_scale, (list, tuple)) else float(box_scale)
        self.point_margin = point_margin
        self.empty_box_size = empty_box_size
        self.flip_dim = {"horizontal": -1, "vertical": -2}.get(flip)
        self.bad_images = BadImageSkipper(bool(skip_bad_images) and is_train)  # counts what it skips

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        m = cfg.MODEL.MRN
        return {
            "is_train": is_train,
            "image_format": cfg.INPUT.FORMAT,
            "crop_size": m.CROP_SIZE,
            "heatmap_mode": m.HEATMAP_MODE,
            "heatmap_sigma": m.HEATMAP_SIGMA,
            "num_classes": m.NUM_CLASSES,
            "box_scale": tuple(m.TRAIN_BOX_SCALE_RANGE) if is_train else m.BOX_SCALE,
            "point_margin": m.POINT_MARGIN,
            "empty_box_size": m.EMPTY_BOX_SIZE,
            "flip": cfg.INPUT.RANDOM_FLIP if is_train else None,
            "skip_bad_images": cfg.DATALOADER.WSSIS_SKIP_BAD_IMAGES,
        }

    def __call__(self, dataset_dict: dict) -> dict:
        d = copy.deepcopy(dataset_dict)
        image = self.bad_images.read(read_mrn_image, d["file_name"], self.image_format, d.get("image_id"))
        if image is None:
            return None  # skipped (DATALOADER.WSSIS_SKIP_BAD_IMAGES), counted in the log
        h, w = image.shape[-2:]
        if (h, w) != (d["height"], d["width"]):
            raise ValueError(f"{d['file_name']}: image is {h}x{w}, the dataset says "
                             f"{d['height']}x{d['width']}")
        (ann,) = d["annotations"]
        coarse = torch.from_numpy(decode_segmentation(ann["segmentation"], h, w))[None]
        gt = torch.from_numpy(decode_segmentation(ann["gt_segmentation"], h, w))[None]
        point = torch.tensor([ann["point"]], dtype=torch.float32)
        classes = torch.tensor([ann["category_id"]], dtype=torch.long)
        # Random scales use torch's global RNG: seeded per worker by detectron2's train loader (per sample
        # with DATALOADER.WSSIS_SAMPLE_SEEDS).
        box = crop_boxes(coarse, point, (h, w), self.box_scale, point_margin=self.point_margin,
                         empty_box_size=self.empty_box_size)
        inputs = make_mrn_inputs(image, coarse, point, box, out_size=self.crop_size,
                                 heatmap_mode=self.heatmap_mode, sigma=self.heatmap_sigma,
                                 classes=classes, num_classes=self.num_classes, compact_heatmap=True)
        out = {
            "image": inputs["image"][0],
            "heatmap": inputs["heatmap"][0],
            "classes": classes[0],
            "coarse_mask": inputs["coarse_mask"][0],
            "gt_mask": BitMasks(gt).crop_and_resize(box, self.crop_size)[0],
            "crop_box": box[0],
        }
        if self.is_train and self.flip_dim is not None and torch.rand(()) < 0.5:
            for k in ("image", "heatmap", "coarse_mask", "gt_mask"):
                out[k] = out[k].flip(self.flip_dim)
        for k in ("file_name", "image_id", "sample_id", "height", "width"):
            out[k] = d.get(k)
        if not self.is_train:
            out["annotations"] = d["annotations"]
        return out
