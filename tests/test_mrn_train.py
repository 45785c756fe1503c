"""MaskRefineNet training and evaluation through wssis_d2.engine.MRNTrainer (detectron2 DefaultTrainer),
the trainer train_net.py picks for an MRN config."""
import json
import math
import os

import pytest
import torch

from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog

from wssis_d2.config import add_wssis_config
from wssis_d2.data.json_io import load_json, write_json_atomic
from wssis_d2.data.synthetic import generate_shapes_dataset
from wssis_d2.engine import MRNTrainer, trainer_class
from wssis_d2.mrn import register_mrn_dataset
from wssis_d2.mrn.samples import make_mrn_sample_jsons
from wssis_d2.mrn.synthetic import make_corrupted_pseudo_json

REPO = os.path.join(os.path.dirname(__file__), "..")
CPU_CFG = os.path.join(REPO, "configs", "MRN", "MRN_R18_cpu.yaml")

@pytest.fixture(scope="module")
def mrn_data(tmp_path_factory):
    """Sample datasets "_t_mrn_train" / "_t_mrn_val" from 4 synthetic images x 2 "checkpoints"."""
    root = str(tmp_path_factory.mktemp("mrn_train"))
    gt = generate_shapes_dataset(root, 4, image_size=96, seed=7, split="train")
    image_root = os.path.join(root, "images")
    pseudo = [write_json_atomic(make_corrupted_pseudo_json(load_json(gt), seed=s, image_root=image_root,
                                                          unknown_fraction=0.3),
                                os.path.join(root, f"pseudo{s}.json")) for s in (0, 1)]
    out = make_mrn_sample_jsons(pseudo, gt, val_fraction=0.25, seed=0)
    names = {}
    for split in ("train", "val"):
        name = f"_t_mrn_{split}"
        register_mrn_dataset(name, write_json_atomic(out[split], os.path.join(root, f"{name}.json")))
        names[split] = name
    yield names
    for name in names.values():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)

def test_train_net_trains_and_evaluates_mrn(mrn_data, tmp_path):
    cfg = get_cfg()
    add_wssis_config(cfg)
    cfg.merge_from_file(CPU_CFG)
    cfg.DATASETS.TRAIN = (mrn_data["train"],)
    cfg.DATASETS.TEST = (mrn_data["val"],)
    cfg.SOLVER.MAX_ITER = 4
    cfg.SOLVER.IMS_PER_BATCH = 4
    cfg.SOLVER.WARMUP_ITERS = 2
    cfg.MODEL.MRN.CROP_SIZE = 32
    cfg.OUTPUT_DIR = str(tmp_path)
    cfg.freeze()
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer_cls = trainer_class(cfg)  # what train_net.py runs
        assert trainer_cls is MRNTrainer
        trainer = trainer_cls(cfg)
        assert isinstance(trainer.optimizer, torch.optim.Adam)
        assert trainer.optimizer.param_groups[0]["lr"] < cfg.SOLVER.BASE_LR  # warm-up
        trainer.resume_or_load(resume=False)
        trainer.train()
        res = trainer_cls.test(cfg, trainer.model)
    finally:
        torch.set_num_threads(n)

    assert os.path.isfile(os.path.join(cfg.OUTPUT_DIR, "model_final.pth"))
    state = torch.load(os.path.join(cfg.OUTPUT_DIR, "model_final.pth"), map_location="cpu",
                       weights_only=False)
    assert any(k.startswith("decoder.predictor") for k in state["model"])
    with open(os.path.join(cfg.OUTPUT_DIR, "metrics.json")) as f:
        rows = [json.loads(line) for line in f]
    losses = [r["loss_mrn_dice"] for r in rows if "loss_mrn_dice" in r]
    assert losses and all(math.isfinite(v) for v in losses)
    m = res["mrn"]
    n_val = len(DatasetCatalog.get(mrn_data["val"]))
    assert m["num_samples"] == n_val
    assert 0 < m["mIoU_coarse"] <= 100 and 0 <= m["mIoU_refined"] <= 100
    assert m["mIoU_gain"] == pytest.approx(m["mIoU_refined"] - m["mIoU_coarse"])
