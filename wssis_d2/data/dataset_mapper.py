"""Dataset mapper for a mix of fully-labeled and point-labeled images."""
import copy

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import DatasetMapper
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import BitMasks, Boxes, Instances

from ..utils.errors import WSSISInputError
from .coco_masks import decode_segmentation, encode_masks
from .images import BadImageSkipper, read_image
from .point_utils import is_point_labeled, point_annotations_to_instances
from .tiles import TinyInstanceFilter, annotations_in_view, build_tile_augmentation, tiles_enabled

__all__ = ["WSSISDatasetMapper"]


_CROPS = (T.RandomCrop, T.RandomCrop_CategoryAreaConstraint, T.FixedSizeCrop, T.CropTransform,
          T.RandomExtent, T.ExtentTransform)


class WSSISDatasetMapper(DatasetMapper):
    """Map a dataset dict to model inputs, keeping point labels as inputs.

    Output keys (besides ``file_name``, ``height``, ``width``, ``image_id`` passed through):

    * ``"image"``: (3, H', W') uint8 tensor in ``image_format`` after the augmentations.
    * Fully-labeled images, training only: ``"instances"`` exactly as detectron2's ``DatasetMapper``
      (``gt_boxes``, ``gt_classes``, ``gt_masks``: ``BitMasks`` with ``INPUT.MASK_FORMAT bitmask``).
      At inference their annotations are dropped.
    * Point-labeled images (see ``is_point_labeled``), training AND inference: ``"point_instances"``,
      an ``Instances`` of size (H', W') with ``gt_points`` (N, 2) float32 (x, y) in continuous input
      pixel coordinates after the augmentations (pixel (i, j) has centre (j + 0.5, i + 0.5)),
      ``gt_classes`` (N,) int64 contiguous ids, ``gt_point_valid`` (N,) bool (False for a point
      outside the transformed image), ``gt_point_ids`` (N,) int64 source annotation ids (-1 if
      unknown) and, when the annotations carry a true ``bbox``, ``gt_sizes`` (N,) sqrt(w * h) of the
      transformed box (oracle pseudo-labels). Points are inputs of the point-guided pseudo-labeler, hence
      kept at inference; a separate key lets the model tell point guidance from full GT. No
      ``"instances"`` is produced for a point-labeled image.

    Crop augmentations are refused: a crop can cut the clicked object away from its point. Tiles
    (``INPUT.TILE.SIZE`` > 0, :mod:`wssis_d2.data.tiles`) are the exception: in training, a random tile of
    the image at its own resolution, scaled by ``INPUT.TILE.SCALE``; instances cut by it keep their visible
    part (boxes recomputed from the masks), too small ones are dropped and counted; annotations outside
    the tile are not decoded. At inference the image stays whole at its own resolution: the model tiles it.

    Images are read by :func:`wssis_d2.data.images.read_image` (EXIF orientation, 16-bit scaled); a
    missing, unreadable or truncated file raises ``WSSISInputError`` naming it and its image id, or, in
    training with ``skip_bad_images``, is skipped with a warning and a running count (``None`` is
    returned: detectron2's ``MapDataset`` then draws another image).
    """

    @configurable
    def __init__(self, is_train, *, augmentations, image_format, use_instance_mask=False,
                 instance_mask_format="polygon", skip_bad_images=False, tiles=False):
        """
        Args:
            is_train (bool): training (full images get "instances") or inference.
            augmentations (list[Augmentation or Transform]): no crops.
            image_format (str): see ``detection_utils.read_image``.
            use_instance_mask (bool): keep masks of fully-labeled images.
            instance_mask_format (str): "polygon" or "bitmask" (RLE masks need "bitmask").
            skip_bad_images (bool): training only: skip an unreadable image (class docstring).
            tiles (bool): ``augmentations`` hold a ``RandomTileCrop`` (``data.tiles.build_tile_augmentation``):
                masks must be bitmasks; boxes are recomputed from the cropped masks.
        """
        for aug in augmentations:
            if isinstance(aug, _CROPS):
                raise ValueError(f"WSSISDatasetMapper does not support crop augmentation ({aug}): a crop "
                                 "can separate a point from its object. Disable INPUT.CROP.")
        if tiles and is_train and use_instance_mask and instance_mask_format != "bitmask":
            raise WSSISInputError("INPUT.TILE.SIZE > 0 needs INPUT.MASK_FORMAT bitmask (tiles crop the masks)")
        super().__init__(is_train, augmentations=augmentations, image_format=image_format,
                         use_instance_mask=use_instance_mask, instance_mask_format=instance_mask_format,
                         recompute_boxes=bool(tiles) and use_instance_mask)
        self.bad_images = BadImageSkipper(bool(skip_bad_images) and is_train)  # counts what it skips
        self.tiles = bool(tiles)
        self.tiny_instances = TinyInstanceFilter()  # counts what it drops

    @classmethod
    def from_config(cls, cfg, is_train=True):
        if cfg.INPUT.CROP.ENABLED:
            raise ValueError("WSSISDatasetMapper does not support crop augmentation: set "
                             "INPUT.CROP.ENABLED False (a crop can separate a point from its object)")
        tiles = tiles_enabled(cfg)
        return {
            "is_train": is_train,
            "augmentations": build_tile_augmentation(cfg, is_train) if tiles else utils.build_augmentation(cfg, is_train),
            "tiles": tiles,
            "image_format": cfg.INPUT.FORMAT,
            "use_instance_mask": cfg.MODEL.MASK_ON,
            "instance_mask_format": cfg.INPUT.MASK_FORMAT,
            "skip_bad_images": cfg.DATALOADER.get("WSSIS_SKIP_BAD_IMAGES", False),  # plain detectron2 cfgs too
        }

    def __call__(self, dataset_dict):
        """
        Args:
            dataset_dict (dict): one image in detectron2's dataset format; point annotations carry
                ``point_coords`` (continuous pixel coordinates of the stored image) and no
                ``segmentation``. Not modified (deep-copied first).

        Returns:
            dict: see the class docstring (None: a bad image skipped).
        """
        dataset_dict = copy.deepcopy(dataset_dict)
        image = self.bad_images.read(read_image, dataset_dict["file_name"], self.image_format,
                                     dataset_dict.get("image_id"))
        if image is None:
            return None  # skipped (DATALOADER.WSSIS_SKIP_BAD_IMAGES), counted in the log
        return self.map_image(dataset_dict, image)

    def map_image(self, dataset_dict, image):
        """What :meth:`__call__` does once the image is read: augment it and map the annotations.

        Also the entry of an image already in memory (``wssis_d2.engine.PointPredictor``: the same
        test-time transforms and point conversion as the pseudo-label export).

        Args:
            dataset_dict (dict): as in :meth:`__call__`, owned by the caller (modified in place and
                returned); ``height`` / ``width``, if present, must be the image's.
            image (np.ndarray): (H, W, C) uint8 in ``image_format``.

        Returns:
            dict: see the class docstring.
        """
        utils.check_image_size(dataset_dict, image)
        aug_input = T.AugInput(image)
        transforms = self.augmentations(aug_input)
        image = aug_input.image
        image_shape = image.shape[:2]  # (H', W')
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))

        if is_point_labeled(dataset_dict):
            annos = dataset_dict.pop("annotations", [])
            dataset_dict["point_instances"] = point_annotations_to_instances(annos, transforms, image_shape)
            return dataset_dict
        if not self.is_train:
            dataset_dict.pop("annotations", None)
            return dataset_dict
        if "annotations" in dataset_dict:
            if self.use_instance_mask and self.instance_mask_format == "polygon":
                rle = [a for a in dataset_dict["annotations"] if isinstance(a.get("segmentation"), dict)
                       and not a.get("iscrowd", 0)]
                if rle:
                    raise WSSISInputError(f"{dataset_dict['file_name']} (image id {dataset_dict.get('image_id')}): "
                                          f"{len(rle)} annotations have RLE masks; INPUT.MASK_FORMAT 'polygon' "
                                          "takes polygons only: set INPUT.MASK_FORMAT bitmask")
            if self.tiles:
                self._inside_tile(dataset_dict, transforms, image_shape)
            if not any(not a.get("iscrowd", 0) for a in dataset_dict["annotations"]):
                # No object (a tile without objects, or an image kept by FILTER_EMPTY_ANNOTATIONS False): a
                # negative example. detectron2 would build Instances without gt_masks, which SOLOv2 needs.
                dataset_dict.pop("annotations")
                empty = Instances(image_shape, gt_boxes=Boxes(torch.zeros(0, 4)),
                                  gt_classes=torch.zeros(0, dtype=torch.int64))
                if self.use_instance_mask:
                    empty.gt_masks = BitMasks(torch.zeros((0,) + tuple(image_shape), dtype=torch.bool))
                dataset_dict["instances"] = empty
                return dataset_dict
            self._transform_annotations(dataset_dict, transforms, image_shape)
            if self.tiles and "instances" in dataset_dict and dataset_dict["instances"].has("gt_masks"):
                dataset_dict["instances"] = self.tiny_instances(dataset_dict["instances"], dataset_dict["file_name"])
        return dataset_dict

    @staticmethod
    def _inside_tile(dataset_dict, transforms, image_shape):
        """Keep the annotations that can be visible in the training tile (``data.tiles.annotations_in_view``:
        the box mapped through every transform meets the tile), with polygons as RLE (cropping polygons
        would need shapely; a bitmask crop is exact). Crowd annotations are never training targets."""
        h, w = dataset_dict["height"], dataset_dict["width"]
        annos = [a for a in dataset_dict["annotations"] if not a.get("iscrowd", 0)]
        in_view = annotations_in_view(annos, transforms, image_shape)
        kept = []
        for ann, seen in zip(annos, in_view):
            if not seen:
                continue  # wholly outside the tile
            if isinstance(ann.get("segmentation"), list):
                ann["segmentation"] = encode_masks(decode_segmentation(ann["segmentation"], h, w)[None])[0]
            kept.append(ann)
        dataset_dict["annotations"] = kept
