"""Learning test: SOLOv2 trained through train_net's Trainer on 4 generated images, with the default
augmentation (horizontal flip), reaches segm AP >= 90 on those same images with detectron2's COCOEvaluator.

This proves, end to end, that targets, losses and the optimiser let the model learn and that inference
(Matrix NMS, maskness, resizing to the original image) decodes what it learned. About a minute on 2 CPU
cores.
"""
import os

import torch

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import default_argument_parser

from conftest import REPO
from wssis_d2.data.datasets import register_dataset
from wssis_d2.data.synthetic import generate_shapes_dataset

CONFIG = os.path.join(REPO, "configs", "CPU", "SOLOv2_tiny.yaml")


def test_solov2_learns_four_images(tmp_path, train_net):
    # 160 px images with at most 4 shapes of >= 48 px: SOLOv2's 1/4-resolution masks can represent
    # them. The Dice targets are binary at 1/4 resolution (as published), so a boundary is learned to
    # within a 4-px block: with shapes of >= 32 px (192 px images) this test reached AP 86.9 (98.6 with soft
    # targets). Measured 2026-12-07: 92.6 here; 92.6 at 192 px and 250 iterations (twice the time), 91.1
    # with shapes of >= 40 px.
    json_file = generate_shapes_dataset(str(tmp_path / "data"), 4, image_size=160, seed=0, max_instances=4,
                                        min_size=48)
    name = "_test_learning_shapes4"
    register_dataset(name, json_file, "coco", str(tmp_path / "data" / "images"))
    try:
        torch.manual_seed(0)
        args = default_argument_parser().parse_args(
            [
                "--config-file", CONFIG,
                "DATASETS.TRAIN", f"('{name}',)",
                "DATASETS.TEST", f"('{name}',)",
                "SOLVER.IMS_PER_BATCH", "4",
                "SOLVER.MAX_ITER", "200",
                "SOLVER.STEPS", "(160,)",
                "INPUT.MIN_SIZE_TRAIN", "(160,)",
                "INPUT.MAX_SIZE_TRAIN", "160",
                "INPUT.MIN_SIZE_TEST", "160",
                "INPUT.MAX_SIZE_TEST", "160",
                "SEED", "0",
                "OUTPUT_DIR", str(tmp_path / "out"),
            ]
        )
        train_net.main(args)
        args.eval_only = True
        args.opts += ["MODEL.WEIGHTS", str(tmp_path / "out" / "model_final.pth")]
        results = train_net.main(args)
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    segm = results["segm"]
    print(f"learning test: segm AP {segm['AP']:.1f} (AP50 {segm['AP50']:.1f}, AP75 {segm['AP75']:.1f})")
    assert segm["AP"] >= 90.0, segm
