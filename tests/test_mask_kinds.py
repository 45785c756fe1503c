"""Mask kinds (issue 13 case 6): multi-polygon instances, compressed and uncompressed RLE mixed in one file,
crowd regions, degenerate polygons and empty masks are handled by every stage, as docs/DATA.md states."""
import json
import logging

import numpy as np
import pycocotools.mask as mask_util
import pytest
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detectron2.data import DatasetCatalog

from wssis_d2.data.coco_masks import clean_segmentations, decode_segmentation, encode_masks
from wssis_d2.data.dataset_mapper import WSSISDatasetMapper
from wssis_d2.data.datasets import register_user_datasets
from wssis_d2.data.splits import make_wssis_splits
from wssis_d2.evaluation.ids import one_based_annotation_ids, usable_gt_masks
from wssis_d2.mrn.samples import pair_mrn_samples
from wssis_d2.utils.errors import WSSISInputError

from conftest import saved_catalogs

H, W = 20, 30


def _uncompressed(mask):
    """COCO's uncompressed RLE: column-major runs, starting with a run of zeros."""
    flat = mask.T.ravel().astype(np.int64)
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]]))
    counts = ([0] if flat[0] else []) + runs.tolist()
    return {"size": [H, W], "counts": counts}


def _box_mask(y0, y1, x0, x1):
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


M2, M3 = _box_mask(2, 8, 3, 9), _box_mask(10, 15, 10, 20)


def _mixed():
    ann = lambda i, img, cat, segm, crowd=0: {"id": i, "image_id": img, "category_id": cat, "segmentation": segm,
                                              "bbox": [0, 0, 1, 1], "area": 1, "iscrowd": crowd}
    return {
        "images": [{"id": k, "file_name": f"{k}.png", "height": H, "width": W} for k in (1, 2)],
        "categories": [{"id": 1, "name": "x"}, {"id": 2, "name": "y"}],
        "annotations": [
            ann(1, 1, 1, [[1, 1, 5, 1, 5, 5, 1, 5], [20, 10, 25, 10, 25, 15, 20, 15]]),  # two parts
            ann(2, 1, 1, encode_masks(M2[None])[0]),  # compressed RLE
            ann(3, 1, 2, _uncompressed(M3)),  # uncompressed RLE
            ann(4, 1, 2, _uncompressed(_box_mask(0, 4, 20, 30)), crowd=1),
            ann(5, 2, 1, [[1, 1, 2, 2]]),  # degenerate only: empty
            ann(6, 2, 1, [[1, 1, 9, 1, 9, 9, 1, 9], [3, 3, 4, 4]]),  # one degenerate part
            ann(7, 2, 2, _uncompressed(np.zeros((H, W), bool))),  # empty RLE
            ann(8, 2, 2, []),  # empty list
        ],
    }


def test_clean_segmentations_rule():
    coco = _mixed()
    kept, counts = clean_segmentations(coco["annotations"])
    assert [a["id"] for a in kept] == [1, 2, 3, 4, 6]
    assert counts == {"degenerate_polygons": 2, "empty_masks": 3}
    assert kept[4]["segmentation"] == [[1, 1, 9, 1, 9, 9, 1, 9]] and len(kept[0]["segmentation"]) == 2
    assert coco["annotations"][5]["segmentation"][1] == [3, 3, 4, 4]  # the input is not modified
    np.testing.assert_array_equal(decode_segmentation(kept[1]["segmentation"], H, W), M2)
    np.testing.assert_array_equal(decode_segmentation(kept[2]["segmentation"], H, W), M3)
    both = decode_segmentation(kept[0]["segmentation"], H, W)
    assert both[1:5, 1:5].all() and both[10:15, 20:25].all() and not both[7:9, 10:18].any()  # union of parts


@pytest.fixture
def mixed_dataset(tmp_path):
    for k in (1, 2):
        Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(tmp_path / f"{k}.png")
    (tmp_path / "mixed.json").write_text(json.dumps(_mixed()))
    with saved_catalogs():
        register_user_datasets([["wssis_test_mixed", str(tmp_path / "mixed.json"), str(tmp_path)]])
        yield DatasetCatalog.get("wssis_test_mixed")


def test_training_targets(mixed_dataset, caplog):
    dicts = mixed_dataset
    assert [len(d["annotations"]) for d in dicts] == [4, 1]  # ids 5, 7, 8 dropped, crowd kept in the dicts
    mapper = WSSISDatasetMapper(True, augmentations=[], image_format="BGR", use_instance_mask=True,
                                instance_mask_format="bitmask")
    first, second = mapper(dicts[0])["instances"], mapper(dicts[1])["instances"]
    assert len(first) == 3 and len(second) == 1  # the crowd region is no training target (detectron2's rule)
    np.testing.assert_array_equal(first.gt_masks.tensor[1].numpy(), M2)
    np.testing.assert_array_equal(first.gt_masks.tensor[2].numpy(), M3)
    polygon = WSSISDatasetMapper(True, augmentations=[], image_format="BGR", use_instance_mask=True,
                                 instance_mask_format="polygon")
    with pytest.raises(WSSISInputError, match=r"1.png \(image id 1\): 2 annotations have RLE masks; .*bitmask"):
        polygon(dicts[0])
    assert len(polygon(dicts[1])["instances"]) == 1


def test_loader_logs_the_counts(tmp_path, caplog):
    for k in (1, 2):
        Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(tmp_path / f"{k}.png")
    (tmp_path / "mixed.json").write_text(json.dumps(_mixed()))
    with saved_catalogs(), caplog.at_level(logging.WARNING, logger="wssis_d2.data.coco_masks"):
        register_user_datasets([["wssis_test_mixed", str(tmp_path / "mixed.json"), str(tmp_path)]])
        DatasetCatalog.get("wssis_test_mixed")
    # detectron2's loader drops the degenerate-only instance itself; the empty RLE and [] are dropped here
    assert "annotations with an empty mask" in caplog.text and "dropped 0 polygons" in caplog.text


def test_split_tool(caplog):
    with caplog.at_level(logging.WARNING, logger="wssis_d2.data.coco_masks"):
        splits = make_wssis_splits(_mixed(), json_file="mixed.json", seed=1, count=1)
    assert "mixed.json: dropped 2 polygons with fewer than 3 points and 3 annotations with an empty mask" in caplog.text
    info = splits["full"]["info"]
    assert info["dropped_degenerate_polygons"] == 2 and info["dropped_empty_mask_annotations"] == 3
    full_image = splits["full"]["images"][0]["id"]
    all_anns = splits["full"]["annotations"] + splits["points_gt"]["annotations"]
    assert sorted(a["id"] for a in all_anns) == [1, 2, 3, 4, 6]
    points = {a["id"] for a in splits["points"]["annotations"]}
    assert points == {a["id"] for a in splits["points_gt"]["annotations"] if not a["iscrowd"]}  # no crowd click
    assert all(a["image_id"] == full_image for a in splits["full"]["annotations"])


def test_evaluation_keeps_crowd_and_survives_degenerate_polygons():
    coco = COCO()
    coco.dataset = _mixed()
    coco.createIndex()
    with pytest.raises(Exception):
        coco.annToRLE(coco.anns[5])  # pycocotools alone crashes on a 2-point polygon
    usable_gt_masks(coco, "mixed")
    one_based_annotation_ids(coco)
    assert sorted(coco.anns) == [1, 2, 3, 4, 6]
    dets = []
    for a in coco.dataset["annotations"]:  # a perfect detection of every GT, the crowd region included
        rle = coco.annToRLE(a)
        rle = dict(rle, counts=rle["counts"] if isinstance(rle["counts"], str) else rle["counts"].decode("ascii"))
        dets.append({"image_id": a["image_id"], "category_id": a["category_id"], "segmentation": rle, "score": 0.9})
    ev = COCOeval(coco, coco.loadRes(dets), "segm")
    ev.params.areaRng = [[0, 1e10]] * 4
    ev.evaluate()
    ev.accumulate()
    # The detection on the crowd region is ignored (no false positive): precision stays 1 at every recall.
    precision = ev.eval["precision"][0, :, :, 0, -1]
    assert precision.size and np.allclose(precision, 1.0)


def test_mrn_samples_with_a_dropped_gt():
    gt = _mixed()
    rle = encode_masks(M2[None])[0]
    pseudo = {"images": gt["images"], "categories": gt["categories"], "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "segmentation": rle, "point": [5.5, 4.5], "point_ann_id": 2},
        {"id": 2, "image_id": 2, "category_id": 1, "segmentation": rle, "point": [1.5, 1.5], "point_ann_id": 5},
        {"id": 3, "image_id": 2, "category_id": 2, "segmentation": rle, "point": [1.5, 1.5], "point_ann_id": -1}]}
    samples, stats = pair_mrn_samples([pseudo], gt)
    assert [s["gt_ann_id"] for s in samples] == [2] and stats["unmatched"] == 2
    assert mask_util.area(samples[0]["gt_segmentation"]) == M2.sum()
