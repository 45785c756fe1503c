#!/usr/bin/env python
"""Speed of SOLOv2 (ours) vs detectron2's Mask R-CNN, both R50-FPN, and of SOLOv2 on the ImageNet
MobileNetV2-FPN, on the same inputs (not a test).

The R50 models are built from their configs with no pretrained weights and GroupNorm in the backbone, FPN
and heads (random FrozenBN is numerically broken). "solov2_mnv2" is the same SOLOv2 (configs/COCO/
SOLOv2_R50_3x.yaml heads, 256-channel FPN) on ``build_mobilenetv2_fpn_backbone`` with FrozenBN, loading
torchvision's ImageNet weights when they are installed (random otherwise: the speed is the same). Times exclude warm-up iterations. Both models get
every chance to do their full inference work despite random weights: SOLOv2 runs with SCORE_THR 0, so
NMS_PRE (500) candidate masks are always computed and scored (the mask-area filter then drops most of
the random masks before Matrix NMS), and Mask R-CNN with SCORE_THRESH_TEST 0, so 100 detections always
go through its mask head. The detections per image are printed beside the times.

Example:
    python tools/benchmark.py --size 512 --json output/benchmark/model_speed.json
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch

import wssis_d2  # noqa: F401  (first: it hides fvcore's torch.jit.script FutureWarning)

from detectron2 import model_zoo
from detectron2.config import get_cfg
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from detectron2.solver import build_optimizer
from detectron2.utils.events import EventStorage
from detectron2.utils.logger import setup_logger

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from wssis_d2 import add_wssis_config  # noqa: E402
from wssis_d2.data.images import read_image  # noqa: E402
from wssis_d2.data.json_io import write_json_atomic  # noqa: E402
from wssis_d2.data.synthetic import generate_shapes_dataset  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..")


def solov2_cfg(size):
    cfg = get_cfg()
    add_wssis_config(cfg)
    cfg.merge_from_file(os.path.join(ROOT, "configs", "COCO", "SOLOv2_R50_3x.yaml"))
    cfg.merge_from_list(["MODEL.SOLOV2.SCORE_THR", 0.0, "MODEL.SOLOV2.NUM_CLASSES", 6])
    return _common(cfg, size)


def solov2_mnv2_cfg(size):
    from wssis_d2.modeling.backbone.mobilenet import mobilenet_v2_weights_path

    cfg = solov2_cfg(size)
    cfg.merge_from_list(["MODEL.BACKBONE.NAME", "build_mobilenetv2_fpn_backbone",
                         "MODEL.MOBILENET.PRETRAINED", os.path.isfile(mobilenet_v2_weights_path()),
                         "MODEL.MOBILENET.NORM", "FrozenBN", "INPUT.FORMAT", "RGB",
                         "MODEL.PIXEL_MEAN", [123.675, 116.28, 103.53], "MODEL.PIXEL_STD", [58.395, 57.12, 57.375]])
    return cfg


def mask_rcnn_cfg(size):
    cfg = get_cfg()
    add_wssis_config(cfg)  # harmless: only adds keys
    # detectron2's own GroupNorm Mask R-CNN (GN in backbone, FPN, 4conv1fc box head and mask head).
    cfg.merge_from_file(model_zoo.get_config_file("Misc/mask_rcnn_R_50_FPN_3x_gn.yaml"))
    cfg.merge_from_list(["MODEL.ROI_HEADS.NUM_CLASSES", 6, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0])
    return _common(cfg, size)


def _common(cfg, size):
    cfg.merge_from_list(
        [
            "MODEL.WEIGHTS", "",
            "MODEL.DEVICE", "cuda" if torch.cuda.is_available() else "cpu",
            "MODEL.RESNETS.NORM", "GN",
            "MODEL.FPN.NORM", "GN",
            "MODEL.RESNETS.STRIDE_IN_1X1", False,
            "INPUT.MASK_FORMAT", "bitmask",
            "SOLVER.BASE_LR", 0.001,
        ]
    )
    return cfg


def load_inputs(json_file, image_root, size):
    """detectron2-format training dicts (image tensor + Instances), resized to ``size``."""
    from detectron2.data.datasets import load_coco_json

    dicts = load_coco_json(json_file, image_root, "wssis_bench_" + str(abs(hash(json_file))))
    aug = T.ResizeShortestEdge(size, size)
    out = []
    for d in dicts:
        img = read_image(d["file_name"], "BGR", d.get("image_id"))
        aug_input = T.AugInput(img)
        tfm = aug(aug_input)
        img = aug_input.image
        annos = [utils.transform_instance_annotations(a, tfm, img.shape[:2]) for a in d["annotations"]]
        inst = utils.annotations_to_instances(annos, img.shape[:2], mask_format="bitmask")
        out.append(
            {
                "image": torch.as_tensor(np.ascontiguousarray(img.transpose(2, 0, 1))),
                "instances": inst,
                "height": img.shape[0],
                "width": img.shape[1],
            }
        )
    return out


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def time_train(cfg, inputs, batch, warmup, iters):
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    opt = build_optimizer(cfg, model)
    times = []
    with EventStorage(0):  # detectron2's models log training statistics into it
        for i in range(warmup + iters):
            data = [inputs[(i * batch + k) % len(inputs)] for k in range(batch)]
            sync()
            t = time.perf_counter()
            loss = sum(model(data).values())
            opt.zero_grad()
            loss.backward()
            opt.step()
            sync()
            if i >= warmup:
                times.append(time.perf_counter() - t)
    return float(np.median(times)), model


def time_inference(model, inputs, warmup, iters):
    model.eval()
    times, dets = [], []
    with torch.no_grad():
        for i in range(warmup + iters):
            x = inputs[i % len(inputs)]
            x = {"image": x["image"], "height": x["height"], "width": x["width"]}
            sync()
            t = time.perf_counter()
            out = model([x])
            sync()
            if i >= warmup:
                times.append(time.perf_counter() - t)
                dets.append(len(out[0]["instances"]))
    return float(np.median(times)), float(np.mean(dets))


MODELS = {"solov2": solov2_cfg, "solov2_mnv2": solov2_mnv2_cfg, "mask_rcnn": mask_rcnn_cfg}
LABELS = {"solov2": "SOLOv2 R50-FPN (ours)", "solov2_mnv2": "SOLOv2 MobileNetV2-FPN (ours, ImageNet)",
          "mask_rcnn": "Mask R-CNN R50-FPN GN (detectron2)"}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512, help="square input side in pixels")
    parser.add_argument("--batch", type=int, default=2, help="images per training iteration")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=5, help="timed iterations (median reported)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS),
                        help="models to time (ratios need mask_rcnn)")
    args = parser.parse_args()
    setup_logger(name="wssis_d2")
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        json_file = generate_shapes_dataset(tmp, max(4, args.batch * 2), image_size=args.size, seed=0, split="bench")
        inputs = load_inputs(json_file, os.path.join(tmp, "images"), args.size)
    results = {}
    for name in args.models:
        cfg = MODELS[name](args.size)
        train_s, model = time_train(cfg, inputs, args.batch, args.warmup, args.iters)
        infer_s, dets = time_inference(model, inputs, args.warmup, args.iters)
        results[name] = {"train_s_per_iter": train_s, "infer_s_per_image": infer_s, "detections_per_image": dets}
        print(f"{name}: train {train_s:.3f} s/iter, inference {infer_s:.3f} s/image, {dets:.0f} detections/image",
              flush=True)
    ref = results.get("mask_rcnn")
    for name in ("solov2", "solov2_mnv2"):
        if ref and name in results:
            key = "" if name == "solov2" else "_mnv2"
            results["train_ratio" + key] = results[name]["train_s_per_iter"] / ref["train_s_per_iter"]
            results["infer_ratio" + key] = results[name]["infer_s_per_image"] / ref["infer_s_per_image"]
    results["setup"] = {
        "size": args.size,
        "batch": args.batch,
        "warmup": args.warmup,
        "iters": args.iters,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    print()
    print("| model | train s/iter | inference s/image |")
    print("|---|---|---|")
    for name in args.models:
        r = results[name]
        print(f"| {LABELS[name]} | {r['train_s_per_iter']:.3f} | {r['infer_s_per_image']:.3f} |")
    for key, label in (("", "SOLOv2 R50"), ("_mnv2", "SOLOv2 MobileNetV2")):
        if "train_ratio" + key in results:
            print(f"| ratio {label} / Mask R-CNN | {results['train_ratio' + key]:.2f}x | "
                  f"{results['infer_ratio' + key]:.2f}x |")
    print(f"(targets: train <= 1.2x, inference <= 1.0x; {args.size} px, batch {args.batch}, "
          f"median of {args.iters} after {args.warmup} warm-up, {results['setup']['device']})")
    if args.json:
        write_json_atomic(results, args.json, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
