"""What ``wssis_d2.engine.MRNTrainer`` needs to train and evaluate MaskRefineNet with detectron2's DefaultTrainer.

- :func:`build_mrn_train_loader`: detectron2's train loader (sampler, per-worker seeding, trivial
  batch collator) over per-sample dataset dicts with :class:`MRNDatasetMapper`: one crop per element,
  ``SOLVER.IMS_PER_BATCH`` crops per iteration.
- :func:`build_mrn_test_loader`: held-out samples, ``MODEL.MRN.REFINE_BATCH_SIZE`` crops per batch,
  split over processes by detectron2's ``InferenceSampler``.
- :func:`build_optimizer`: Adam when ``SOLVER.OPTIMIZER`` is "ADAM" (detectron2 0.6 builds SGD
  only), otherwise detectron2's SGD; same parameter groups and gradient clipping as detectron2's.
- :func:`check_trained_mrn_weights`: refuse weights without a trained decoder before refining with them.
"""
import os

import torch
import torch.utils.data as torchdata

from detectron2.data import (
    DatasetFromList,
    MapDataset,
    build_detection_train_loader,
    get_detection_dataset_dicts,
)
from detectron2.data.samplers import InferenceSampler
from detectron2.solver import build_optimizer as build_d2_optimizer
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping

from ..data.images import check_image_files
from ..data.sample_seeds import build_sample_seeded_train_loader
from ..utils.errors import WSSISInputError
from .dataset_mapper import MRNDatasetMapper
from .evaluator import MRNEvaluator

__all__ = [
    "is_mrn_config",
    "build_mrn_train_loader",
    "build_mrn_test_loader",
    "build_mrn_evaluator",
    "build_optimizer",
    "check_trained_mrn_weights",
]


def is_mrn_config(cfg) -> bool:
    """True when ``cfg`` trains or evaluates MaskRefineNet."""
    return cfg.MODEL.META_ARCHITECTURE == "MaskRefineNet"


def build_mrn_train_loader(cfg):
    """detectron2's train loader with :class:`MRNDatasetMapper` (training mode), after checking that every
    sample's image exists (``DATALOADER.WSSIS_SKIP_BAD_IMAGES``: skip missing ones with a count); with
    ``DATALOADER.WSSIS_SAMPLE_SEEDS`` each sample's draws seeded per sample (``data.sample_seeds``)."""
    dicts = get_detection_dataset_dicts(cfg.DATASETS.TRAIN, filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS)
    dicts = check_image_files(dicts, ", ".join(cfg.DATASETS.TRAIN), skip=cfg.DATALOADER.WSSIS_SKIP_BAD_IMAGES)
    mapper = MRNDatasetMapper(cfg, is_train=True)
    if cfg.DATALOADER.WSSIS_SAMPLE_SEEDS:
        return build_sample_seeded_train_loader(cfg, mapper, dicts)
    return build_detection_train_loader(cfg, mapper=mapper, dataset=dicts)


def _collate(batch):
    return batch


def build_mrn_test_loader(cfg, dataset_name: str):
    """Inference loader over an MRN sample dataset; batches of ``MODEL.MRN.REFINE_BATCH_SIZE``."""
    dicts = get_detection_dataset_dicts([dataset_name], filter_empty=False)
    skip = cfg.DATALOADER.WSSIS_SKIP_BAD_IMAGES  # skipping: every image is decoded once here (slower)
    dicts = check_image_files(dicts, dataset_name, skip=skip, decode=skip)
    dataset = MapDataset(DatasetFromList(dicts, copy=False), MRNDatasetMapper(cfg, is_train=False))
    sampler = torchdata.BatchSampler(InferenceSampler(len(dataset)), cfg.MODEL.MRN.REFINE_BATCH_SIZE,
                                     drop_last=False)
    return torchdata.DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.DATALOADER.NUM_WORKERS,
                                collate_fn=_collate)


def build_mrn_evaluator(cfg, dataset_name: str):
    """:class:`MRNEvaluator` with the model's mask threshold."""
    return MRNEvaluator(mask_threshold=cfg.MODEL.MRN.MASK_THRESHOLD)


def build_optimizer(cfg, model: torch.nn.Module) -> torch.optim.Optimizer:
    """``SOLVER.OPTIMIZER`` "ADAM": Adam (``SOLVER.BASE_LR``, betas (0.9, 0.999), L2 weight decay
    ``SOLVER.WEIGHT_DECAY``) on detectron2's default parameter groups, with detectron2's optional
    per-parameter gradient clipping; "SGD": detectron2's own builder."""
    name = cfg.SOLVER.OPTIMIZER.upper()
    if name == "SGD":
        return build_d2_optimizer(cfg, model)
    if name != "ADAM":
        raise ValueError(f"Unknown SOLVER.OPTIMIZER {cfg.SOLVER.OPTIMIZER!r}; expected 'SGD' or 'ADAM'")
    params = get_default_optimizer_params(
        model,
        base_lr=cfg.SOLVER.BASE_LR,
        weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
        bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR,
        weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS,
    )
    return maybe_add_gradient_clipping(cfg, torch.optim.Adam)(
        params, lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY
    )


def check_trained_mrn_weights(path: str) -> None:
    """Refuse MaskRefineNet weights without a trained decoder (an ImageNet backbone or nothing at all):
    :class:`WSSISInputError` naming ``path``. Used where masks are refined (``tools/refine_pseudo_labels.py``,
    ``wssis_d2.engine.PointPredictor``)."""
    if not path:
        raise WSSISInputError("MODEL.WEIGHTS is empty: pass the trained MaskRefineNet, e.g. "
                              "MODEL.WEIGHTS output/.../model_final.pth")
    if path.endswith(".pth") and os.path.isfile(path):
        state = torch.load(path, map_location="cpu", weights_only=False)
        state = state.get("model", state)
        if not any(k.startswith("decoder.") for k in state):
            raise WSSISInputError(f"{path} has no MaskRefineNet decoder weights: not a trained MRN")
    elif not path.endswith(".pth"):
        raise WSSISInputError(f"{path}: expected a trained MaskRefineNet checkpoint (.pth), not backbone weights")
