"""detectron2 trainers of wssis-d2, one per tool, and the rule that picks one for a config.

- :class:`Trainer`: SOLOv2 (teacher, student): the point-aware dataset mapper, COCO mask evaluation and the
  microscopy metrics (:class:`~wssis_d2.evaluation.microscopy_evaluator.MicroscopyEvaluator`).
- :class:`MRNTrainer`: MaskRefineNet on MRN sample datasets (per-sample loaders, its mIoU evaluator).
- :class:`PseudoLabelTrainer`: a SOLOv2 :class:`Trainer` whose evaluation on a points set (or on every set
  with ``MODEL.WSSIS.EXPORT_PSEUDO_LABELS``) exports point-guided pseudo-labels: ``--eval-only`` with a
  ``configs/pseudo/`` config is the export entry.

All three build the optimizer of ``SOLVER.OPTIMIZER`` (detectron2's SGD, or Adam), and their checkpointer
raises when a checkpoint does not fit the config (:func:`wssis_d2.checkpoint_check.checked`).
"""
import logging
import os
import weakref

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import (MetadataCatalog, build_detection_test_loader, build_detection_train_loader,
                             get_detection_dataset_dicts)
from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer
from detectron2.engine.train_loop import TrainerBase
from detectron2.evaluation import DatasetEvaluators
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..checkpoint_check import checked
from ..data.dataset_mapper import WSSISDatasetMapper
from ..data.images import check_image_files
from ..data.sample_seeds import build_sample_seeded_train_loader
from ..evaluation import build_coco_evaluator, build_pseudo_label_exporter
from ..evaluation.microscopy_evaluator import MicroscopyEvaluator
from ..mrn.build import (build_mrn_evaluator, build_mrn_test_loader, build_mrn_train_loader, build_optimizer,
                         is_mrn_config)
from ..pseudo import build_pseudo_label_loader, is_pseudo_label_dataset
from .launch import create_ddp_model

__all__ = ["Trainer", "MRNTrainer", "PseudoLabelTrainer", "trainer_class", "train_dataset_dicts"]


def train_dataset_dicts(cfg):
    """detectron2's training dataset dicts of ``cfg`` (``DATALOADER.FILTER_EMPTY_ANNOTATIONS`` drops images
    without a non-crowd annotation, logged by detectron2), after one pass checking that every image file
    exists (``DATALOADER.WSSIS_SKIP_BAD_IMAGES``: skip missing ones with a count, else fail naming it)."""
    dicts = get_detection_dataset_dicts(cfg.DATASETS.TRAIN, filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS)
    return check_image_files(dicts, ", ".join(cfg.DATASETS.TRAIN), skip=cfg.DATALOADER.WSSIS_SKIP_BAD_IMAGES)


class _CheckedTrainer(DefaultTrainer):
    """DefaultTrainer whose checkpointer refuses a checkpoint that does not fit the config (keys / shapes
    named) on ``resume_or_load``, instead of detectron2's silent partial load, and whose DDP model also
    works on the CPU (GLOO processes, :mod:`wssis_d2.engine.launch`)."""

    def __init__(self, cfg):
        # detectron2 0.6's DefaultTrainer.__init__, step for step, except that the model is wrapped by
        # our create_ddp_model: detectron2's passes device_ids=[local rank], which torch's DDP refuses
        # for a CPU model. On CUDA ours is detectron2's. Keep in step with the pinned detectron2's.
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):  # setup_logger not called for d2
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        model = create_ddp_model(model, broadcast_buffers=False)
        self._trainer = (AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer)(model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = checked(DetectionCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self)))
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())


class Trainer(_CheckedTrainer):
    """SOLOv2: DefaultTrainer with the point-aware dataset mapper and COCO mask evaluation."""

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference")
        evaluator_type = getattr(MetadataCatalog.get(dataset_name), "evaluator_type", "coco")
        if evaluator_type != "coco":
            raise NotImplementedError(f"No evaluator for dataset {dataset_name!r} of type {evaluator_type!r}")
        coco = build_coco_evaluator(cfg, dataset_name, output_folder)
        # microscopy metrics (accuracy@0.5, DSB, SEG, count error) beside COCO AP, on the same true masks
        return DatasetEvaluators([coco, MicroscopyEvaluator(dataset_name, coco._coco_api,
                                                            score_thr=cfg.TEST.WSSIS_COUNT_SCORE_THR)])

    @classmethod
    def build_train_loader(cls, cfg):
        mapper, dicts = WSSISDatasetMapper(cfg, is_train=True), train_dataset_dicts(cfg)
        if cfg.DATALOADER.WSSIS_SAMPLE_SEEDS:
            return build_sample_seeded_train_loader(cfg, mapper, dicts)
        return build_detection_train_loader(cfg, mapper=mapper, dataset=dicts)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        # The project's mapper at test time too: images read as in training (16-bit scaled) and, with
        # INPUT.TILE, kept at their own resolution for the model's tiles.
        return build_detection_test_loader(cfg, dataset_name, mapper=WSSISDatasetMapper(cfg, is_train=False))

    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_optimizer(cfg, model)  # SOLVER.OPTIMIZER: detectron2's SGD, or Adam


class PseudoLabelTrainer(Trainer):
    """SOLOv2 :class:`Trainer` that exports pseudo-labels of its pseudo-label test sets
    (``wssis_d2.pseudo.is_pseudo_label_dataset``) instead of evaluating them; other sets as Trainer."""

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        if is_pseudo_label_dataset(cfg, dataset_name):
            return build_pseudo_label_exporter(cfg, dataset_name)
        return super().build_evaluator(cfg, dataset_name, output_folder)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        if is_pseudo_label_dataset(cfg, dataset_name):
            return build_pseudo_label_loader(cfg, dataset_name)
        return super().build_test_loader(cfg, dataset_name)


class MRNTrainer(_CheckedTrainer):
    """MaskRefineNet: per-sample train / test loaders and the MRN evaluator (docs/MRN.md)."""

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        return build_mrn_evaluator(cfg, dataset_name)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_mrn_test_loader(cfg, dataset_name)

    @classmethod
    def build_train_loader(cls, cfg):
        return build_mrn_train_loader(cfg)

    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_optimizer(cfg, model)  # Adam, as published (SOLVER.OPTIMIZER "ADAM")


def trainer_class(cfg):
    """The trainer of ``cfg``: :class:`MRNTrainer` for a MaskRefineNet config, :class:`PseudoLabelTrainer`
    when one of ``DATASETS.TEST`` is a pseudo-label set (datasets must be registered), else :class:`Trainer`."""
    if is_mrn_config(cfg):
        return MRNTrainer
    if any(is_pseudo_label_dataset(cfg, name) for name in cfg.DATASETS.TEST):
        return PseudoLabelTrainer
    return Trainer
