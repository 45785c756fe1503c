"""PseudoLabelExporter: schema, original category ids, RLE-consistent boxes, restart without duplicates."""
import json
import os

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from pycocotools.coco import COCO

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BitMasks, Instances

from wssis_d2.data import register_point_instances
from wssis_d2.evaluation import PseudoLabelExporter

CATEGORIES = [{"id": 3, "name": "cat"}, {"id": 11, "name": "dog"}, {"id": 20, "name": "cow"}]  # non-contiguous
H, W = 40, 60
NUM_IMAGES = 4
ANN_KEYS = {"id", "image_id", "category_id", "segmentation", "bbox", "area", "iscrowd", "score", "point",
            "level", "point_ann_id"}


@pytest.fixture
def dataset(tmp_path):
    name = f"test_pseudo_export_{tmp_path.name}"
    points = {
        "images": [{"id": 100 + i, "file_name": f"{i}.jpg", "height": H, "width": W} for i in range(NUM_IMAGES)],
        "categories": CATEGORIES,
        "annotations": [
            {"id": 1000 + 10 * i + k, "image_id": 100 + i, "category_id": CATEGORIES[k]["id"],
             "point_coords": [[5.5 + 10 * k, 8.5]], "point_labels": [1], "iscrowd": 0}
            for i in range(NUM_IMAGES) for k in range(3)
        ],
    }
    path = tmp_path / "points.json"
    path.write_text(json.dumps(points))
    register_point_instances(name, {}, str(path), str(tmp_path / "images"))
    yield name
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def _output(image_id):
    """Fake point-decoder output of one image: 3 rectangles, contiguous classes 0, 1, 2 (ids 3, 11, 20)."""
    masks = torch.zeros(3, H, W, dtype=torch.bool)
    masks[0, 2:10, 3:9] = True
    masks[1, 5:30, 10:40] = True
    masks[2, 20:39, 30:59] = True
    inst = Instances((H, W))
    inst.pred_masks = masks
    inst.scores = torch.tensor([0.9, 0.5, 0.25])
    inst.pred_classes = torch.tensor([0, 1, 2])
    inst.pred_boxes = BitMasks(masks).get_bounding_boxes()
    inst.pred_points = torch.tensor([[5.5, 8.5], [15.5, 8.5], [40.25, 30.75]])
    inst.pred_levels = torch.tensor([0, 2, 4])
    base = 1000 + 10 * (image_id - 100)
    inst.point_ids = torch.tensor([base, base + 1, base + 2])
    stats = {"num_points": 4, "num_invalid_points": 1, "num_points_without_mask": 1}
    return {"instances": inst, "point_stats": stats}


def _batches(image_ids, size=2):
    for i in range(0, len(image_ids), size):
        ids = image_ids[i : i + size]
        yield [{"image_id": k} for k in ids], [_output(k) for k in ids]


def _export(exporter, image_ids):
    exporter.reset()
    for inputs, outputs in _batches(image_ids):
        exporter.process(inputs, outputs)
    return exporter.evaluate()


def test_schema_categories_rle_and_load_res(dataset, tmp_path):
    out = tmp_path / "out" / "pseudo.json"
    exporter = PseudoLabelExporter(dataset, str(out), mode="adaptive", weights="teacher.pth")
    result = _export(exporter, [100 + i for i in range(NUM_IMAGES)])
    assert result["pseudo_labels"]["num_annotations"] == 3 * NUM_IMAGES
    data = json.loads(out.read_text())
    assert set(data) == {"info", "images", "categories", "annotations"}
    info = data["info"]
    assert info["mode"] == "adaptive" and info["weights"] == "teacher.pth" and info["dataset"] == dataset
    assert info["image_root"] == str(tmp_path / "images")
    assert (info["num_points"], info["num_points_without_mask"], info["num_invalid_points"]) == (16, 4, 4)
    assert data["categories"] == CATEGORIES
    assert data["images"] == [{"id": 100 + i, "file_name": f"{i}.jpg", "height": H, "width": W}
                              for i in range(NUM_IMAGES)]
    anns = data["annotations"]
    assert [a["id"] for a in anns] == list(range(1, len(anns) + 1))
    for a in anns:
        assert set(a) == ANN_KEYS
        assert a["category_id"] in (3, 11, 20) and a["iscrowd"] == 0
        assert isinstance(a["segmentation"]["counts"], str) and a["segmentation"]["size"] == [H, W]
        mask = mask_util.decode(a["segmentation"])
        ys, xs = np.nonzero(mask)
        assert a["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        assert a["area"] == mask.sum()
    first = anns[:3]
    assert [a["category_id"] for a in first] == [3, 11, 20]
    assert [a["level"] for a in first] == [0, 2, 4] and [a["point_ann_id"] for a in first] == [1000, 1001, 1002]
    assert first[2]["point"] == [40.25, 30.75] and first[0]["score"] == pytest.approx(0.9)
    assert first[0]["bbox"] == [3, 2, 6, 8]
    coco = COCO(str(out))
    assert len(coco.getAnnIds()) == len(anns)
    res = coco.loadRes([dict(a) for a in anns])
    assert len(res.getAnnIds()) == len(anns)
    assert not list(out.parent.glob("*.jsonl")), "part files are removed"


def test_interrupted_export_restarts_without_duplicates(dataset, tmp_path):
    out = tmp_path / "pseudo.json"
    image_ids = [100 + i for i in range(NUM_IMAGES)]
    crashed = PseudoLabelExporter(dataset, str(out))
    crashed.reset()
    for inputs, outputs in list(_batches(image_ids))[:1]:
        crashed.process(inputs, outputs)
    del crashed  # simulated crash: no evaluate(), a stale part file stays behind
    assert not out.exists(), "no output file before evaluate()"
    assert os.path.getsize(str(out) + ".part0.jsonl") > 0

    _export(PseudoLabelExporter(dataset, str(out)), image_ids)
    anns = json.loads(out.read_text())["annotations"]
    keys = [(a["image_id"], a["point_ann_id"]) for a in anns]
    assert len(keys) == len(set(keys)) == 3 * NUM_IMAGES
    assert len({a["id"] for a in anns}) == len(anns)


def test_image_processed_twice_is_kept_once(dataset, tmp_path):
    out = tmp_path / "pseudo.json"
    _export(PseudoLabelExporter(dataset, str(out)), [100, 101, 100])
    anns = json.loads(out.read_text())["annotations"]
    assert len(anns) == 6 and sorted({a["image_id"] for a in anns}) == [100, 101]


def test_output_is_replaced_atomically(dataset, tmp_path):
    out = tmp_path / "pseudo.json"
    out.write_text("previous")
    exporter = PseudoLabelExporter(dataset, str(out))
    exporter.reset()
    exporter.process(*next(_batches([100])))
    assert out.read_text() == "previous", "the old file stays until evaluate() writes the new one"
    exporter.evaluate()
    assert len(json.loads(out.read_text())["annotations"]) == 3
    assert sorted(os.listdir(tmp_path)) == ["points.json", "pseudo.json"]


def test_plain_outputs_are_refused(dataset, tmp_path):
    exporter = PseudoLabelExporter(dataset, str(tmp_path / "p.json"))
    exporter.reset()
    inst = _output(100)["instances"]
    plain = Instances(inst.image_size, pred_masks=inst.pred_masks, scores=inst.scores,
                      pred_classes=inst.pred_classes)
    with pytest.raises(ValueError, match="point_instances"):
        exporter.process([{"image_id": 100}], [{"instances": plain}])


def test_crowded_image_exports_every_pseudo_label(dataset, tmp_path):
    """300 pseudo-labels of one image are all written: the exporter never caps."""
    masks = torch.zeros(300, H, W, dtype=torch.bool)
    for k in range(300):
        masks[k, (k // 20) % H, (k % 20) * 2 % W] = True
    inst = Instances((H, W))
    inst.pred_masks = masks
    inst.scores = torch.rand(300)
    inst.pred_classes = torch.zeros(300, dtype=torch.long)
    inst.pred_boxes = BitMasks(masks).get_bounding_boxes()
    inst.pred_points = torch.zeros(300, 2)
    inst.pred_levels = torch.zeros(300, dtype=torch.long)
    inst.point_ids = torch.arange(300)
    stats = {"num_points": 300, "num_invalid_points": 0, "num_points_without_mask": 0, "num_collisions": 7,
             "num_points_capped": 0}
    out = tmp_path / "crowd.json"
    exporter = PseudoLabelExporter(dataset, str(out), mode="adaptive")
    exporter.reset()
    exporter.process([{"image_id": 100}], [{"instances": inst, "point_stats": stats}])
    exporter.evaluate()
    data = json.loads(out.read_text())
    assert len(data["annotations"]) == 300 and data["info"]["num_annotations"] == 300
    assert data["info"]["num_collisions"] == 7 and data["info"]["num_points_capped"] == 0
