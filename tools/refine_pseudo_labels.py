#!/usr/bin/env python
"""Refine a pseudo-label json with a trained MaskRefineNet (PointWSSIS refinement stage).

Examples:
    python tools/refine_pseudo_labels.py --config-file configs/MRN/MRN_R18_cpu.yaml \\
        --pseudo output/pseudo/points_5p.json --output output/pseudo/points_5p_mrn.json \\
        MODEL.WEIGHTS output/cpu/mrn_r18/model_final.pth
    python tools/refine_pseudo_labels.py --num-gpus 8 --config-file configs/MRN/MRN_R101_coco.yaml \\
        --pseudo pseudo.json --output pseudo_mrn.json MODEL.WEIGHTS mrn_r101.pth

Device: MODEL.DEVICE (one process per GPU with --num-gpus). Interrupted runs resume from
``<output>.parts/``; a complete output is skipped unless --overwrite. See docs/MRN.md.
"""
import argparse
import logging
import os

import wssis_d2  # noqa: F401  (first: it hides fvcore's torch.jit.script FutureWarning)

import detectron2.utils.comm as comm
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.utils.logger import setup_logger

from wssis_d2.config import add_wssis_config
from wssis_d2.engine.launch import launch  # detectron2's; GLOO processes without CUDA
from wssis_d2.mrn import MaskRefineNet  # noqa: F401  (registers the meta-architecture)
from wssis_d2.mrn.build import check_trained_mrn_weights
from wssis_d2.mrn.refine import refine_pseudo_labels
from wssis_d2.checkpoint_check import checked
from wssis_d2.utils.errors import run_cli
from wssis_d2.utils.preflight import check_output_file

logger = logging.getLogger("wssis_d2.refine_pseudo_labels")


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, help="MaskRefineNet config (configs/MRN/*.yaml)")
    p.add_argument("--pseudo", required=True, help="input pseudo-label json")
    p.add_argument("--output", required=True, help="output json (written atomically)")
    p.add_argument("--image-root", default=None, help="default: the input json's info['image_root']")
    p.add_argument("--overwrite", action="store_true", help="redo a complete output, drop old parts")
    p.add_argument("--skip-bad-images", action="store_true",
                   help="keep the coarse masks of an unreadable image (counted) instead of stopping "
                        "(also: DATALOADER.WSSIS_SKIP_BAD_IMAGES True)")
    p.add_argument("--log-period", type=int, default=100, help="log progress every N images per process")
    p.add_argument("--num-gpus", type=int, default=1, help="processes, one per GPU")
    p.add_argument("--num-machines", type=int, default=1)
    p.add_argument("--machine-rank", type=int, default=0)
    p.add_argument("--dist-url", default="auto")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, e.g. MODEL.WEIGHTS x.pth")
    return p


def setup_cfg(args):
    cfg = get_cfg()
    add_wssis_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    if cfg.MODEL.META_ARCHITECTURE != "MaskRefineNet":
        raise ValueError(f"{args.config_file} is not a MaskRefineNet config")
    return cfg


def main(args):
    cfg = setup_cfg(args)
    check_output_file(args.output, "refined json")  # writable, enough free disk
    setup_logger(distributed_rank=comm.get_rank())
    setup_logger(distributed_rank=comm.get_rank(), name="wssis_d2")
    check_trained_mrn_weights(cfg.MODEL.WEIGHTS)
    model = build_model(cfg)
    checked(DetectionCheckpointer(model)).load(cfg.MODEL.WEIGHTS)
    model.eval()
    logger.info(f"MaskRefineNet R-{cfg.MODEL.MRN.DEPTH}, crops {cfg.MODEL.MRN.CROP_SIZE} px, "
                f"batch {cfg.MODEL.MRN.REFINE_BATCH_SIZE}, device {model.device}, "
                f"weights {cfg.MODEL.WEIGHTS}")
    info = {"weights": os.path.abspath(cfg.MODEL.WEIGHTS), "config_file": os.path.abspath(args.config_file),
            "depth": cfg.MODEL.MRN.DEPTH, "crop_size": cfg.MODEL.MRN.CROP_SIZE,
            "box_scale": cfg.MODEL.MRN.BOX_SCALE, "mask_threshold": cfg.MODEL.MRN.MASK_THRESHOLD,
            "heatmap_mode": cfg.MODEL.MRN.HEATMAP_MODE, "device": str(model.device)}
    return refine_pseudo_labels(model, args.pseudo, args.output, image_root=args.image_root,
                                image_format=cfg.INPUT.FORMAT, overwrite=args.overwrite,
                                log_period=args.log_period, info=info,
                                skip_bad_images=args.skip_bad_images or cfg.DATALOADER.WSSIS_SKIP_BAD_IMAGES)


def cli(argv):
    args = get_parser().parse_args(argv)
    if args.opts and args.opts[0] == "--":
        args.opts = args.opts[1:]
    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))


if __name__ == "__main__":
    run_cli(cli)  # one "error: ..." line for bad input (--traceback: all of it)
