"""MaskRefineNet (MRN): refines the teacher's coarse point-guided masks (METHOD.md section 4).

Importing this package registers ``MaskRefineNet`` in detectron2's ``META_ARCH_REGISTRY``.
Pure functions, one module per concept: crop boxes :mod:`wssis_d2.mrn.boxes`, point heatmaps
:mod:`~wssis_d2.mrn.heatmaps`, crop + resize into network inputs :mod:`~wssis_d2.mrn.inputs`, paste-back
:mod:`~wssis_d2.mrn.paste`; losses in :mod:`wssis_d2.mrn.losses` (Dice: ``wssis_d2.modeling.losses``), network blocks in :mod:`wssis_d2.mrn.network`; training data in
:mod:`~wssis_d2.mrn.samples` (pairing), :mod:`~wssis_d2.mrn.datasets` (registration) and
:mod:`~wssis_d2.mrn.dataset_mapper`; trainer pieces in :mod:`~wssis_d2.mrn.build` and
:mod:`~wssis_d2.mrn.evaluator`; the refinement stage in :mod:`~wssis_d2.mrn.refine`. See docs/MRN.md.
"""
from .build import (
    build_mrn_evaluator,
    build_mrn_test_loader,
    build_mrn_train_loader,
    build_optimizer,
    is_mrn_config,
)
from .boxes import box_scales, crop_boxes, mask_boxes
from .dataset_mapper import MRNDatasetMapper, read_mrn_image
from .datasets import load_mrn_json, register_mrn_dataset, register_mrn_datasets
from .evaluator import MRNEvaluator
from .heatmaps import HEATMAP_MODES, expand_heatmap, heatmap_channels, point_heatmap
from .inputs import crop_and_resize, make_mrn_inputs
from .model import MaskRefineNet
from .paste import merge_refined, paste_masks
from .refine import refine_pseudo_labels
from .samples import make_mrn_sample_jsons, pair_mrn_samples

__all__ = [
    "HEATMAP_MODES",
    "MRNDatasetMapper",
    "MRNEvaluator",
    "MaskRefineNet",
    "box_scales",
    "build_mrn_evaluator",
    "build_mrn_test_loader",
    "build_mrn_train_loader",
    "build_optimizer",
    "crop_and_resize",
    "crop_boxes",
    "expand_heatmap",
    "heatmap_channels",
    "is_mrn_config",
    "load_mrn_json",
    "make_mrn_inputs",
    "make_mrn_sample_jsons",
    "mask_boxes",
    "merge_refined",
    "pair_mrn_samples",
    "paste_masks",
    "point_heatmap",
    "read_mrn_image",
    "refine_pseudo_labels",
    "register_mrn_dataset",
    "register_mrn_datasets",
]
