"""Images without annotations (issue 13 case 7) in every stage: a full image with no object, a point image
with no click, an image whose pseudo-label list is empty. Nothing crashes; docs/DATA.md says what happens."""
import json

import numpy as np
import torch
from PIL import Image

from detectron2.config import get_cfg
from detectron2.structures import Boxes, Instances

from wssis_d2 import add_wssis_config
from wssis_d2.data.coco_masks import encode_masks
from wssis_d2.data.dataset_mapper import WSSISDatasetMapper
from wssis_d2.data.datasets import register_point_instances
from wssis_d2.data.splits import make_wssis_splits
from wssis_d2.engine.trainers import train_dataset_dicts
from wssis_d2.evaluation.pseudo_labels import PseudoLabelExporter
from wssis_d2.evaluation.quality import pseudo_label_quality
from wssis_d2.mrn.samples import pair_mrn_samples
from wssis_d2.pseudo.merge import merge_pseudo_labels

from conftest import saved_catalogs

H, W = 16, 16


def _mask():
    m = np.zeros((H, W), bool)
    m[4:10, 4:10] = True
    return m


def _coco():
    """Images 1..4; only image 2 and 4 have an object."""
    rle = encode_masks(_mask()[None])[0]
    return {"images": [{"id": k, "file_name": f"{k}.png", "height": H, "width": W} for k in (1, 2, 3, 4)],
            "categories": [{"id": 1, "name": "a"}],
            "annotations": [{"id": k, "image_id": k, "category_id": 1, "segmentation": rle, "bbox": [4, 4, 6, 6],
                             "area": 36, "iscrowd": 0} for k in (2, 4)]}


def test_split_tool_keeps_empty_images():
    splits = make_wssis_splits(_coco(), json_file="e.json", seed=1, count=2)
    full_ids = {im["id"] for im in splits["full"]["images"]}
    point_ids = {im["id"] for im in splits["points"]["images"]}
    assert full_ids | point_ids == {1, 2, 3, 4} and not full_ids & point_ids
    assert {im["id"] for im in splits["points_gt"]["images"]} == point_ids
    assert len(splits["points"]["annotations"]) == len(point_ids & {2, 4})


def test_training_drops_images_without_annotations_unless_told(tmp_path):
    for k in (1, 2):
        Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(tmp_path / f"{k}.png")
    points = {"images": [{"id": k, "file_name": f"{k}.png", "height": H, "width": W} for k in (1, 2)],
              "categories": [{"id": 1, "name": "a"}],
              "annotations": [{"id": 2, "image_id": 2, "category_id": 1, "point_coords": [[5.0, 5.0]]}]}
    (tmp_path / "p.json").write_text(json.dumps(points))
    cfg = get_cfg()
    add_wssis_config(cfg)
    cfg.DATASETS.TRAIN = ("wssis_test_empty_points",)
    with saved_catalogs():
        register_point_instances("wssis_test_empty_points", {}, str(tmp_path / "p.json"), str(tmp_path))
        # detectron2's filter_empty_annotations (DATALOADER.FILTER_EMPTY_ANNOTATIONS True): image 1 is not trained on
        assert [d["image_id"] for d in train_dataset_dicts(cfg)] == [2]
        cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS = False
        dicts = train_dataset_dicts(cfg)
        assert [d["image_id"] for d in dicts] == [1, 2]
        out = WSSISDatasetMapper(True, augmentations=[], image_format="BGR")(dicts[0])
        assert len(out["point_instances"]) == 0  # an image with no point: no point target, no crash


def test_export_writes_an_empty_entry_and_counts_it(tmp_path):
    points = {"images": [{"id": k, "file_name": f"{k}.png", "height": H, "width": W} for k in (1, 2)],
              "categories": [{"id": 1, "name": "a"}],
              "annotations": [{"id": 2, "image_id": 2, "category_id": 1, "point_coords": [[5.0, 5.0]]}]}
    (tmp_path / "p.json").write_text(json.dumps(points))

    def output(n):
        inst = Instances((H, W))
        inst.pred_masks = torch.from_numpy(_mask())[None].repeat(n, 1, 1)
        inst.pred_boxes = Boxes(torch.tensor([[4.0, 4.0, 10.0, 10.0]]).repeat(n, 1))
        inst.scores, inst.pred_classes = torch.ones(n), torch.zeros(n, dtype=torch.long)
        inst.pred_points, inst.pred_levels = torch.full((n, 2), 5.0), torch.zeros(n, dtype=torch.long)
        inst.point_ids = torch.full((n,), 2, dtype=torch.long)  # the GT annotation id of image 2
        return {"instances": inst, "point_stats": {"num_points": n}}

    with saved_catalogs():
        register_point_instances("wssis_test_empty_export", {}, str(tmp_path / "p.json"), str(tmp_path))
        exporter = PseudoLabelExporter("wssis_test_empty_export", str(tmp_path / "pseudo.json"), distributed=False)
        exporter.reset()
        exporter.process([{"image_id": 1}, {"image_id": 2}], [output(0), output(1)])
        summary = exporter.evaluate()["pseudo_labels"]
    pseudo = json.loads((tmp_path / "pseudo.json").read_text())
    assert summary["num_images_processed"] == 2 and summary["num_images_without_pseudo_labels"] == 1
    assert pseudo["info"]["num_images_without_pseudo_labels"] == 1
    assert [im["id"] for im in pseudo["images"]] == [1, 2] and [a["image_id"] for a in pseudo["annotations"]] == [2]

    # merge (empty images dropped from the student's set), report, MRN samples: no crash on the empty image
    full = _coco()
    full["images"] = [dict(im, id=im["id"] + 10) for im in full["images"]]
    full["annotations"] = [dict(a, image_id=a["image_id"] + 10) for a in full["annotations"]]
    merged = merge_pseudo_labels(full, pseudo)
    assert len(merged["annotations"]) == 3 and merged["info"]["num_images_dropped"] == 3  # 11, 13 and 1
    gt = dict(_coco(), images=_coco()["images"][:2], annotations=[a for a in _coco()["annotations"] if a["image_id"] <= 2])
    report = pseudo_label_quality(pseudo, gt)
    assert report["mean_iou"] == 1.0 and report["coverage"] == 1.0
    samples, stats = pair_mrn_samples([pseudo], gt)
    assert [s["image_id"] for s in samples] == [2] and stats["unmatched"] == 0
