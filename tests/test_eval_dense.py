"""Images with more than 100 objects: COCOEvaluator scores as many detections as the model keeps
(MODEL.SOLOV2.MAX_PER_IMG), and an image denser than that cap is logged."""
import json
import logging

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.structures import Boxes, Instances
from pycocotools.coco import COCO

from wssis_d2.config import add_wssis_config
from wssis_d2.data.datasets import register_user_datasets
from wssis_d2.evaluation.coco import build_coco_evaluator, dense_images

from conftest import saved_catalogs

SIDE, N = 64, 150  # 150 separate 3x3 squares on a 64-px image


def _squares():
    masks = []
    for k in range(N):
        y, x = 4 * (k // 15), 4 * (k % 15)
        m = np.zeros((SIDE, SIDE), bool)
        m[y:y + 3, x:x + 3] = True
        masks.append(m)
    return masks


def _gt(masks):
    anns = []
    for k, m in enumerate(masks):
        rle = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        anns.append({"id": k + 1, "image_id": 1, "category_id": 1, "segmentation": rle, "iscrowd": 0,
                     "area": float(m.sum()), "bbox": [float(v) for v in mask_util.toBbox(rle)]})
    return {"images": [{"id": 1, "file_name": "a.png", "height": SIDE, "width": SIDE}],
            "categories": [{"id": 1, "name": "cell"}], "annotations": anns}


def _segm_ap(tmp_path, max_per_img):
    masks = _squares()
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(_gt(masks)))
    cfg = get_cfg()
    add_wssis_config(cfg)
    cfg.MODEL.SOLOV2.MAX_PER_IMG = max_per_img
    with saved_catalogs():
        register_user_datasets([["dense_val", str(path), str(tmp_path)]])
        evaluator = build_coco_evaluator(cfg, "dense_val", str(tmp_path / f"inference_{max_per_img}"))
        stacked = torch.from_numpy(np.stack(masks))
        boxes = torch.tensor([[4 * (k % 15), 4 * (k // 15), 4 * (k % 15) + 3, 4 * (k // 15) + 3] for k in range(N)],
                             dtype=torch.float32)
        inst = Instances((SIDE, SIDE), pred_masks=stacked, scores=torch.linspace(0.9, 0.5, N),
                         pred_classes=torch.zeros(N, dtype=torch.int64), pred_boxes=Boxes(boxes))
        evaluator.reset()
        evaluator.process([{"image_id": 1, "height": SIDE, "width": SIDE}], [{"instances": inst}])
        return evaluator.evaluate()["segm"]["AP"]


def test_every_kept_detection_is_scored(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="wssis_d2.evaluation.coco"):
        assert _segm_ap(tmp_path, 200) == pytest.approx(100.0)  # 150 perfect masks, all scored
    assert "capped" not in caplog.text


def test_an_image_denser_than_the_cap_is_logged(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="wssis_d2.evaluation.coco"):
        ap = _segm_ap(tmp_path, 100)  # COCO's 100: only the 100 best of 150 perfect masks count
    assert ap < 70.0
    assert "1 images have more true instances than the model keeps" in caplog.text and "densest 150" in caplog.text


def test_dense_images_counts_non_crowd_annotations():
    coco = COCO()
    coco.dataset = {"annotations": [{"image_id": 1}] * 3 + [{"image_id": 2, "iscrowd": 1}] * 5 + [{"image_id": 2}]}
    assert dense_images(coco, 2) == {1: 3} and dense_images(coco, 3) == {}
