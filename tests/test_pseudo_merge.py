"""Merging full GT with pseudo-labels: disjoint images, renumbering, empty images dropped, registration."""
import importlib.util
import json
import os

import numpy as np
import pycocotools.mask as mask_util
import pytest

from detectron2.data import DatasetCatalog, MetadataCatalog

from wssis_d2.pseudo import merge_pseudo_labels, read_json_info, register_pseudo_label_dataset

ROOT = os.path.join(os.path.dirname(__file__), "..")
CATEGORIES = [{"id": 2, "name": "a"}, {"id": 9, "name": "b"}]


def _rle(y0, y1, x0, x1, h=20, w=30):
    m = np.zeros((h, w), np.uint8)
    m[y0:y1, x0:x1] = 1
    rle = mask_util.encode(np.asfortranarray(m))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _full():
    return {"info": {"image_root": "/data/images"},
            "images": [{"id": i, "file_name": f"{i}.jpg", "height": 20, "width": 30} for i in (1, 2, 3)],
            "categories": CATEGORIES,
            "annotations": [
                {"id": 7, "image_id": 1, "category_id": 2, "segmentation": [[1, 1, 9, 1, 9, 9, 1, 9]],
                 "bbox": [1, 1, 8, 8], "area": 64, "iscrowd": 0},
                {"id": 8, "image_id": 2, "category_id": 9, "segmentation": _rle(2, 6, 3, 9),
                 "bbox": [3, 2, 6, 4], "area": 24, "iscrowd": 0}]}  # image 3: no annotation


def _pseudo():
    return {"info": {"tool": "x", "image_root": "/data/images", "mode": "adaptive"},
            "images": [{"id": i, "file_name": f"{i}.jpg", "height": 20, "width": 30} for i in (10, 11)],
            "categories": CATEGORIES,
            "annotations": [
                {"id": 1, "image_id": 10, "category_id": 9, "segmentation": _rle(0, 5, 0, 5), "bbox": [0, 0, 5, 5],
                 "area": 25, "iscrowd": 0, "score": 0.7, "point": [2.5, 2.5], "level": 1, "point_ann_id": 55},
                {"id": 2, "image_id": 10, "category_id": 2, "segmentation": _rle(5, 9, 5, 9), "bbox": [5, 5, 4, 4],
                 "area": 16, "iscrowd": 0, "score": 0.2, "point": [6.5, 6.5], "level": 0, "point_ann_id": 56}]}


def test_merge_renumbers_keeps_fields_and_drops_empty_images():
    merged = merge_pseudo_labels(_full(), _pseudo())
    assert [img["id"] for img in merged["images"]] == [1, 2, 10]
    assert merged["info"]["num_images_dropped"] == 2 and merged["info"]["image_root"] == "/data/images"
    anns = merged["annotations"]
    assert [a["id"] for a in anns] == [1, 2, 3, 4]
    assert [a["image_id"] for a in anns] == [1, 2, 10, 10]
    assert anns[2]["point_ann_id"] == 55 and anns[2]["score"] == 0.7 and anns[2]["level"] == 1
    assert "score" not in anns[0]
    assert merged["categories"] == CATEGORIES


def test_merge_refuses_overlapping_images_and_unknown_categories():
    pseudo = _pseudo()
    pseudo["images"].append({"id": 2, "file_name": "2.jpg", "height": 20, "width": 30})
    with pytest.raises(ValueError, match=r"share 1 image ids \(e.g. \[2\]\)"):
        merge_pseudo_labels(_full(), pseudo)
    pseudo = _pseudo()
    pseudo["annotations"][0]["category_id"] = 4
    with pytest.raises(ValueError, match=r"category ids \[4\]"):
        merge_pseudo_labels(_full(), pseudo)


def test_different_image_roots_give_absolute_file_names():
    pseudo = _pseudo()
    pseudo["info"]["image_root"] = "/other/root"
    merged = merge_pseudo_labels(_full(), pseudo)
    assert merged["images"][0]["file_name"] == "/data/images/1.jpg"
    assert merged["images"][-1]["file_name"] == "/other/root/10.jpg" and merged["info"]["image_root"] is None


def test_cli_and_registration(tmp_path):
    (tmp_path / "full.json").write_text(json.dumps(_full()))
    (tmp_path / "pseudo.json").write_text(json.dumps(_pseudo()))
    spec = importlib.util.spec_from_file_location("merge_tool", os.path.join(ROOT, "tools", "merge_pseudo_labels.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = tmp_path / "merged.json"
    tool.main(["--full", str(tmp_path / "full.json"), "--pseudo", str(tmp_path / "pseudo.json"),
               "--output", str(out)])
    assert read_json_info(str(out))["num_annotations"] == 4
    name = f"test_pseudo_merged_{tmp_path.name}"
    register_pseudo_label_dataset(name, str(out))
    try:
        dicts = DatasetCatalog.get(name)
        assert [d["file_name"] for d in dicts] == ["/data/images/1.jpg", "/data/images/2.jpg", "/data/images/10.jpg"]
        assert isinstance(dicts[2]["annotations"][0]["segmentation"], dict)
        assert MetadataCatalog.get(name).thing_dataset_id_to_contiguous_id == {2: 0, 9: 1}
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
