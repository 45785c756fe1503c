#!/usr/bin/env python
"""Train or evaluate wssis-d2 models (SOLOv2 teacher/student) with detectron2's trainer.

Examples:
    python train_net.py --config-file configs/CPU/SOLOv2_tiny.yaml
    python train_net.py --config-file configs/CPU/SOLOv2_tiny.yaml --eval-only MODEL.WEIGHTS out/model_final.pth
    python train_net.py --config-file configs/COCO/SOLOv2_R50_3x.yaml --num-gpus 8
    # your own COCO / point files, no Python: DATASETS.WSSIS_REGISTER (README "Your own data")
    python train_net.py --config-file configs/CPU/SOLOv2_shapes.yaml \
        DATASETS.WSSIS_REGISTER "[['mine_train', 'output/custom/labels.json', 'images']]" \
        DATASETS.TRAIN "('mine_train',)" DATASETS.TEST "()" MODEL.SOLOV2.NUM_CLASSES 3 INPUT.MASK_FORMAT bitmask
    # MaskRefineNet on sample jsons from tools/build_mrn_dataset.py (docs/MRN.md)
    python train_net.py --config-file configs/MRN/MRN_R18_cpu.yaml
    # pseudo-labels of a points set -> OUTPUT_DIR/pseudo_labels/<dataset>.json (docs/PSEUDO_LABELS.md)
    python train_net.py --config-file configs/pseudo/SOLOv2_tiny_APS.yaml --eval-only MODEL.WEIGHTS teacher.pth
"""
import os

import detectron2.utils.comm as comm
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.data import MetadataCatalog, build_detection_train_loader
from detectron2.engine import DefaultTrainer, default_argument_parser, default_setup, launch
from detectron2.evaluation import verify_results
from detectron2.utils.logger import setup_logger

from wssis_d2 import WSSISDatasetMapper, add_wssis_config, register_wssis_splits
from wssis_d2.data.datasets import register_user_datasets
from wssis_d2.evaluation import build_coco_evaluator, build_pseudo_label_exporter
from wssis_d2.mrn import (build_mrn_evaluator, build_mrn_test_loader, build_mrn_train_loader,
                            build_optimizer, is_mrn_config, register_mrn_datasets)
from wssis_d2.pseudo import build_pseudo_label_loader, is_pseudo_label_dataset
from wssis_d2.checkpoint_check import checked
from wssis_d2.utils.errors import run_cli
from wssis_d2.utils.preflight import check_output_dir

# COCO 2017 PointWSSIS splits and the embedded shapes dataset, under $DETECTRON2_DATASETS (lazy).
register_wssis_splits()
# MaskRefineNet sample jsons $DETECTRON2_DATASETS/mrn/*.json, named by file stem (docs/MRN.md).
register_mrn_datasets()


class Trainer(DefaultTrainer):
    """DefaultTrainer with COCO mask evaluation and the point-aware dataset mapper."""

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        if is_mrn_config(cfg):
            return build_mrn_evaluator(cfg, dataset_name)
        if is_pseudo_label_dataset(cfg, dataset_name):
            return build_pseudo_label_exporter(cfg, dataset_name)
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference")
        evaluator_type = getattr(MetadataCatalog.get(dataset_name), "evaluator_type", "coco")
        if evaluator_type != "coco":
            raise NotImplementedError(f"No evaluator for dataset {dataset_name!r} of type {evaluator_type!r}")
        return build_coco_evaluator(cfg, dataset_name, output_folder)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        if is_mrn_config(cfg):
            return build_mrn_test_loader(cfg, dataset_name)
        if is_pseudo_label_dataset(cfg, dataset_name):
            return build_pseudo_label_loader(cfg, dataset_name)
        return super().build_test_loader(cfg, dataset_name)

    @classmethod
    def build_train_loader(cls, cfg):
        if is_mrn_config(cfg):
            return build_mrn_train_loader(cfg)
        return build_detection_train_loader(cfg, mapper=WSSISDatasetMapper(cfg, is_train=True))

    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_optimizer(cfg, model)  # SOLVER.OPTIMIZER: detectron2's SGD, or Adam


def setup(args):
    cfg = get_cfg()
    add_wssis_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    check_output_dir(cfg.OUTPUT_DIR, "OUTPUT_DIR")  # writable, enough free disk: fail now, not hours later
    default_setup(cfg, args)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="wssis_d2")  # our counts and skips
    register_user_datasets(cfg.DATASETS.WSSIS_REGISTER)  # [name, json, image_root] of your own files
    return cfg


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        checked(DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR)).resume_or_load(cfg.MODEL.WEIGHTS,
                                                                      resume=args.resume)
        res = Trainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, res)
        return res
    trainer = Trainer(cfg)
    checked(trainer.checkpointer)  # a checkpoint that does not fit the config raises, naming keys / shapes
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def cli(argv):
    args = default_argument_parser().parse_args(argv)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )


if __name__ == "__main__":
    run_cli(cli)  # one "error: ..." line for bad input (--traceback or WSSIS_TRACEBACK=1: all of it)
