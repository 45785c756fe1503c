"""Label images for Cellpose / StarDist / napari / Fiji: masks -> files -> masks again, read back with
tifffile, cv2 (-1) and the project's own label-image importer; overlap losses counted."""
import csv
import json
import os

import cv2
import numpy as np
import pytest
import tifffile

from formats_cases import hard_masks, to_coco
from wssis_d2.data.coco_masks import decode_segmentation
from wssis_d2.formats.flatten import flatten_masks, flatten_objects
from wssis_d2.formats.label_image_export import export_label_images, read_class_dict, write_label_image
from wssis_d2.formats.label_images import labels_to_coco, single_category


def _expected(masks, flat):
    """What a flattened object keeps: its mask minus the pixels another object won."""
    return np.stack([m & (flat["labels"] == i) if i else np.zeros_like(m) for m, i in zip(masks, flat["ids"])])


@pytest.mark.parametrize("rule", ["score", "area", "order"])
def test_flatten_rules(rule):
    masks, clicks, scores, _ = hard_masks()
    flat = flatten_masks(masks, scores=scores, clicks=clicks, rule=rule)
    lab = flat["labels"]
    assert lab.dtype == np.uint16
    kept = np.flatnonzero(~flat["lost"])
    np.testing.assert_array_equal(flat["ids"][kept], np.arange(1, len(kept) + 1))  # 1..M in annotation order
    assert set(np.unique(lab)) == set(range(len(kept) + 1))
    union = masks.any(0)
    np.testing.assert_array_equal(lab > 0, union)  # nothing painted outside the masks, no pixel dropped
    for k in kept:  # every kept object holds only its own pixels; what it lost is counted
        own = lab == flat["ids"][k]
        assert not (own & ~masks[k]).any()
        assert flat["hidden_pixels"][k] == masks[k].sum() - own.sum()
    for k, (x, y) in enumerate(clicks):  # every click on its own mask keeps its pixel
        if not np.isnan(x) and masks[k, int(y), int(x)]:
            assert lab[int(y), int(x)] == flat["ids"][k]
    winner_at_overlap = {"score": 7, "area": 6, "order": 7}[rule]  # objects 5 (0.5, 36 px) and 6 (0.95, 36 px)
    assert lab[17, 16] == winner_at_overlap
    # the last object (hidden under a larger, higher-scored one, no click) is lost under "score" only
    assert flat["lost"].tolist() == [False] * 11 + [rule == "score"]


def test_dtype_and_many_objects(tmp_path):
    h = w = 260  # 67,600 one-pixel objects: more than 65,535 ids -> uint32
    n = h * w
    pixels = [np.array([k]) for k in range(n)]
    flat = flatten_objects(pixels, (h, w))
    assert flat["labels"].dtype == np.uint32 and flat["labels"].max() == n
    np.testing.assert_array_equal(flat["labels"].ravel(), np.arange(1, n + 1))
    back = tifffile.imread(write_label_image(flat["labels"], str(tmp_path / "big_masks.tif")))
    assert back.dtype == np.uint32
    np.testing.assert_array_equal(back, flat["labels"])
    with pytest.raises(ValueError, match="do not fit a 16-bit PNG"):
        write_label_image(flat["labels"], str(tmp_path / "big_masks.png"))
    small = flatten_objects(pixels[:300], (h, w))
    assert small["labels"].dtype == np.uint16 and small["labels"].max() == 300  # > 255: never uint8


def test_cellpose_layout_round_trip(tmp_path):
    masks, clicks, scores, cats = hard_masks()
    coco = to_coco(masks, clicks, scores, cats)
    counts = export_label_images(coco, str(tmp_path / "out"))
    flat = flatten_masks(masks, scores=scores, clicks=clicks)
    path = tmp_path / "out" / "a" / "img 1_masks.tif"
    with tifffile.TiffFile(path) as tf:  # what Fiji needs: one page, untiled, greyscale, 16-bit, zlib
        page = tf.pages[0]
        assert len(tf.pages) == 1 and not page.is_tiled and page.photometric == tifffile.PHOTOMETRIC.MINISBLACK
        assert page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE and page.dtype == np.uint16
        lab = page.asarray()
    np.testing.assert_array_equal(lab, flat["labels"])
    back = np.stack([lab == i if i else np.zeros_like(m) for m, i in zip(masks, flat["ids"])])
    np.testing.assert_array_equal(back, _expected(masks, flat))
    assert counts["objects lost to overlaps"] == 1 and counts["objects"] == len(masks)
    info = json.load(open(tmp_path / "out" / "label_images_info.json"))
    assert info["lost_annotation_ids"] == {"a/img 1.png": [12]}
    rows = list(csv.DictReader(open(tmp_path / "out" / "a" / "img 1_objects.csv")))
    assert list(rows[0]) == ["index", "axis-0", "axis-1", "label", "category_id", "category", "score"]
    assert [int(r["label"]) for r in rows] == flat["ids"].tolist()
    assert (float(rows[0]["axis-0"]), float(rows[0]["axis-1"])) == (1.0, 1.0)  # click (1.5, 1.5) in napari pixels
    classes = read_class_dict(str(tmp_path / "out" / "a" / "img 1_objects.csv"))
    assert set(classes) == set(np.unique(lab)) - {0}  # StarDist: every id of the image in the dict
    assert classes[2] == 7
    # the project's own importer reads the label image back: the same objects (a multi-part one stays one)
    os.makedirs(tmp_path / "img")
    cv2.imwrite(str(tmp_path / "img" / "img 1.png"), np.zeros(masks.shape[1:] + (3,), np.uint8))
    os.makedirs(tmp_path / "lab")
    os.replace(path, tmp_path / "lab" / "img 1_masks.tif")
    imported = labels_to_coco(str(tmp_path / "img"), str(tmp_path / "lab"), categories=single_category("x"))
    got = {a["label_value"]: decode_segmentation(a["segmentation"], *masks.shape[1:]) for a in imported["annotations"]}
    assert sorted(got) == list(range(1, 12))
    for k, i in enumerate(flat["ids"]):
        if i:
            np.testing.assert_array_equal(got[i], back[k])


def test_stardist_layout(tmp_path):
    masks, clicks, scores, cats = hard_masks()
    coco = to_coco(masks, clicks, scores, cats, file_name="x.png")
    export_label_images(coco, str(tmp_path / "sd"), layout="stardist", overlap="area")
    lab = cv2.imread(str(tmp_path / "sd" / "masks" / "x.png"), -1)  # same name as the image, 16-bit PNG
    assert lab.dtype == np.uint16
    np.testing.assert_array_equal(lab, flatten_masks(masks, scores=scores, clicks=clicks, rule="area")["labels"])
    with pytest.raises(ValueError, match="png is for the cellpose layout"):
        export_label_images(coco, str(tmp_path / "bad"), layout="stardist", png=True)
