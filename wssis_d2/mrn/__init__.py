"""MaskRefineNet (MRN): refines the teacher's coarse point-guided masks (METHOD.md section 4).

Importing this package registers ``MaskRefineNet`` in detectron2's ``META_ARCH_REGISTRY``.
Pure crop / heatmap / paste-back functions live in :mod:`wssis_d2.mrn.crops`, losses in
:mod:`wssis_d2.mrn.losses`, network blocks in :mod:`wssis_d2.mrn.network`.
"""
from .crops import (
    crop_and_resize,
    crop_boxes,
    crop_masks,
    gaussian_heatmap,
    heatmap_channels,
    make_mrn_inputs,
    mask_boxes,
    merge_refined,
    paste_masks,
)
from .model import MaskRefineNet

__all__ = [
    "MaskRefineNet",
    "crop_and_resize",
    "crop_boxes",
    "crop_masks",
    "gaussian_heatmap",
    "heatmap_channels",
    "make_mrn_inputs",
    "mask_boxes",
    "merge_refined",
    "paste_masks",
]
