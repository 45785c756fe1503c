#!/usr/bin/env python
"""Train or evaluate wssis-d2 models with detectron2's trainer (trainers: ``wssis_d2.engine``).

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
import wssis_d2  # noqa: F401  (first: it hides fvcore's torch.jit.script FutureWarning, wssis_d2/__init__.py)

import detectron2.utils.comm as comm
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.engine import default_argument_parser, default_setup
from detectron2.evaluation import verify_results
from detectron2.utils.logger import setup_logger

from wssis_d2 import add_wssis_config
from wssis_d2.data.datasets import register_user_datasets, register_wssis_splits
from wssis_d2.engine import trainer_class
from wssis_d2.engine.launch import launch  # detectron2's; GLOO processes without CUDA
from wssis_d2.mrn import register_mrn_datasets
from wssis_d2.checkpoint_check import checked
from wssis_d2.utils.errors import run_cli
from wssis_d2.utils.preflight import check_output_dir

# COCO 2017 PointWSSIS splits and the embedded shapes dataset, under $DETECTRON2_DATASETS (lazy).
register_wssis_splits()
# MaskRefineNet sample jsons $DETECTRON2_DATASETS/mrn/*.json, named by file stem (docs/MRN.md).
register_mrn_datasets()


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
    trainer_cls = trainer_class(cfg)  # SOLOv2 Trainer, MRNTrainer or PseudoLabelTrainer (export)
    if args.eval_only:
        model = trainer_cls.build_model(cfg)
        checked(DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR)).resume_or_load(cfg.MODEL.WEIGHTS,
                                                                      resume=args.resume)
        res = trainer_cls.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, res)
        return res
    trainer = trainer_cls(cfg)
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
