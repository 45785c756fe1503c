"""Issue 13 case 4: ground-truth ids starting at 0 lose no match in any evaluation or report, duplicated
ids are errors naming them."""
import contextlib
import io
import json

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from detectron2.structures import Boxes, Instances
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from wssis_d2.data.datasets import register_user_datasets
from wssis_d2.evaluation.coco import build_coco_evaluator
from wssis_d2.evaluation.quality import pseudo_label_quality
from wssis_d2.utils.errors import WSSISInputError

from conftest import saved_catalogs

H, W = 24, 32


def _masks():
    a = np.zeros((H, W), bool)
    a[2:10, 3:12] = True
    b = np.zeros((H, W), bool)
    b[12:22, 15:30] = True
    return [a, b]


def _rle(m):
    rle = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _gt():
    """Image id 0 with annotation ids 0 and 1 (numbered from 0, as many tools do)."""
    anns = []
    for k, m in enumerate(_masks()):
        rle = _rle(m)
        anns.append({"id": k, "image_id": 0, "category_id": 1, "segmentation": rle, "area": float(m.sum()),
                     "bbox": [float(v) for v in mask_util.toBbox(rle)], "iscrowd": 0,
                     "point_coords": [[float(np.nonzero(m)[1].mean()) + 0.5, float(np.nonzero(m)[0].mean()) + 0.5]]})
    return {"images": [{"id": 0, "file_name": "0.png", "height": H, "width": W}],
            "categories": [{"id": 1, "name": "thing"}], "annotations": anns}


def _perfect_dets(gt):
    return [{"image_id": 0, "category_id": 1, "segmentation": a["segmentation"], "score": 0.9} for a in gt["annotations"]]


def test_raw_cocoeval_loses_the_match_of_gt_id_0():
    """The pycocotools behaviour the fix is for (if this starts passing at 100, the fix is no longer needed)."""
    gt = _gt()
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(_perfect_dets(gt)), "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ev.stats[0] < 0.99


def test_pseudo_label_report_perfect_on_gt_id_0(tmp_path):
    gt = _gt()
    pseudo = {"info": {"mode": "adaptive"}, "images": gt["images"], "categories": gt["categories"],
              "annotations": [{"id": k + 1, "point": a["point_coords"][0], "level": 0, "point_ann_id": a["id"],
                               "iscrowd": 0, **{key: a[key] for key in ("image_id", "category_id", "segmentation")}}
                              for k, a in enumerate(gt["annotations"])]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "p.json").write_text(json.dumps(pseudo))
    report = pseudo_label_quality(str(tmp_path / "p.json"), str(tmp_path / "gt.json"))
    assert report["AP"] == pytest.approx(100.0) and report["AP50"] == pytest.approx(100.0)
    assert report["mean_iou"] == pytest.approx(1.0) and report["coverage"] == pytest.approx(1.0)
    assert [a["id"] for a in gt["annotations"]] == [0, 1], "the caller's GT keeps its ids"


def test_coco_evaluator_perfect_on_gt_id_0(tmp_path):
    gt = _gt()
    for a in gt["annotations"]:
        a.pop("point_coords")
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    with saved_catalogs():
        register_user_datasets([["ids0_val", str(path), str(tmp_path)]])
        from detectron2.config import get_cfg
        evaluator = build_coco_evaluator(get_cfg(), "ids0_val", str(tmp_path / "inference"))
        masks = torch.from_numpy(np.stack(_masks()))
        inst = Instances((H, W), pred_masks=masks, scores=torch.tensor([0.9, 0.8]),
                         pred_classes=torch.tensor([0, 0]),
                         pred_boxes=Boxes(torch.tensor([[3, 2, 12, 10], [15, 12, 30, 22]], dtype=torch.float32)))
        evaluator.reset()
        evaluator.process([{"image_id": 0, "height": H, "width": W}], [{"instances": inst}])
        results = evaluator.evaluate()
    assert results["segm"]["AP"] == pytest.approx(100.0)


def test_duplicated_ids_are_errors_naming_them(tmp_path):
    gt = _gt()
    gt["annotations"][1]["id"] = 0
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "p.json").write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(WSSISInputError, match="gt.json: duplicated annotation ids 0"):
        pseudo_label_quality(str(tmp_path / "p.json"), str(tmp_path / "gt.json"))
    gt = _gt()
    gt["images"].append(dict(gt["images"][0]))
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    with saved_catalogs(), pytest.raises(WSSISInputError, match="gt.json: duplicated image ids 0"):
        register_user_datasets([["dup_val", str(tmp_path / "gt.json"), str(tmp_path)]])
