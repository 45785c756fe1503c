"""Label Studio pre-annotations: masks -> task file -> masks again with Label Studio's own RLE decoder (the
SDK's brush module), polygons rasterised back, clicks read back by the project's Label Studio importer."""
import json
import os

import cv2
import numpy as np
import pytest

from formats_cases import CATEGORIES, hard_masks, to_coco
from wssis_d2.formats import labelstudio as ls
from wssis_d2.formats.importers import read_points

brush = pytest.importorskip("label_studio_sdk.converter.brush")


def _filled(mask):
    """The mask with its holes filled: everything not reached from the border by background flood fill."""
    pad = np.pad(mask, 1).astype(np.uint8)
    cv2.floodFill(pad, None, (0, 0), 2)
    return (pad != 2)[1:-1, 1:-1]


def test_brush_rle_is_label_studios():
    masks = hard_masks()[0]
    for m in masks:
        rle = ls.mask_to_rle(m)
        assert int.from_bytes(bytes(rle[:4]), "big") == m.size * 4  # header: number of RGBA values
        decoded = brush.decode_rle(rle).reshape(m.shape + (4,))[:, :, 3]  # Label Studio's decoder, alpha
        np.testing.assert_array_equal(decoded > 0, m)
    with pytest.raises(ValueError, match="not 3 x 5 x 4"):
        ls.rle_to_mask(ls.mask_to_rle(masks[0]), 3, 5)


def test_task_file_round_trip_brush(tmp_path):
    masks, clicks, scores, cats = hard_masks()
    coco = to_coco(masks, clicks, scores, cats)
    counts = ls.export_labelstudio(coco, str(tmp_path))
    tasks = json.load(open(tmp_path / "tasks.json"))
    assert len(tasks) == 1 and tasks[0]["data"]["image"] == "/data/local-files/?d=a/img 1.png"
    objs = ls.task_objects(tasks[0])
    assert [o["id"] for o in objs] == [str(a["id"]) for a in coco["annotations"]]
    # every object comes back as it went out, overlaps included (one region per object)
    np.testing.assert_array_equal(np.stack([o["mask"] for o in objs]), masks)
    assert [o["label"] for o in objs] == [{3: "nucleus", 7: "cell"}[c] for c in cats]
    np.testing.assert_allclose([o["score"] for o in objs], scores)
    assert counts["brushlabels regions"] == len(masks) and counts["keypointlabels regions"] == 10
    config = open(tmp_path / "labeling_config.xml").read()
    assert '<BrushLabels name="tag" toName="image">' in config and '<Label value="cell"/>' in config
    regions = tasks[0]["predictions"][0]["result"]
    assert len({r["id"] for r in regions}) == len(regions)
    # the clicks, given to Label Studio's JSON export format as an annotation, import as the same points
    os.makedirs(tmp_path / "images" / "a")
    cv2.imwrite(str(tmp_path / "images" / "a" / "img 1.png"), np.zeros((masks.shape[1], masks.shape[2], 3), np.uint8))
    tasks[0]["annotations"] = [{"result": regions}]
    json.dump(tasks, open(tmp_path / "export.json", "w"))
    points = read_points("labelstudio", str(tmp_path / "export.json"), str(tmp_path / "images"), CATEGORIES)
    got = sorted((a["point_coords"][0][0], a["point_coords"][0][1]) for a in points["annotations"])
    want = sorted(map(tuple, clicks[~np.isnan(clicks).any(1)]))
    np.testing.assert_allclose(got, want, atol=1e-9)


def test_task_file_round_trip_polygons(tmp_path):
    masks, clicks, scores, cats = hard_masks()
    counts = ls.export_labelstudio(to_coco(masks, clicks, scores, cats), str(tmp_path), polygons=True)
    tasks = json.load(open(tmp_path / "tasks.json"))
    objs = ls.task_objects(tasks[0])
    # polygons: one region per 4-connected part; Label Studio polygons have no holes (counted)
    np.testing.assert_array_equal(np.stack([o["mask"] for o in objs]), np.stack([_filled(m) for m in masks]))
    assert counts["holes filled (polygons)"] == 1 and counts["masks as several polygons"] == 2
    assert "<PolygonLabels" in open(tmp_path / "labeling_config.xml").read()
    pts = np.array([p for r in tasks[0]["predictions"][0]["result"] if r["type"] == "polygonlabels"
                    for p in r["value"]["points"]])
    assert pts.min() >= 0 and pts.max() <= 100


def test_many_objects():
    h, w, n = 20, 16, 300  # > 255 objects, one pixel each
    masks = np.zeros((n, h, w), bool)
    masks[np.arange(n), np.arange(n) // w, np.arange(n) % w] = True
    coco = to_coco(masks, np.full((n, 2), np.nan), np.ones(n), np.full(n, 3))
    regions = [r for a in coco["annotations"] for r in ls.object_regions(
        masks[a["id"] - 1], "nucleus", region_id=str(a["id"]), height=h, width=w)]
    np.testing.assert_array_equal(np.stack([ls.region_to_mask(r) for r in regions]), masks)


def test_review_flags_and_risk_reach_the_regions(tmp_path):
    masks, clicks, scores, cats = hard_masks()
    coco = to_coco(masks, clicks, scores, cats)
    coco["annotations"][0].update(wssis_flags=["outside_click", "low_score"], wssis_risk=0.8123)
    coco["annotations"][1]["wssis_flag"] = "fallback"
    ls.export_labelstudio(coco, str(tmp_path))
    regions = json.load(open(tmp_path / "tasks.json"))[0]["predictions"][0]["result"]
    meta = {r["id"]: r.get("meta", {}).get("text") for r in regions}
    first, second = (str(a["id"]) for a in coco["annotations"][:2])
    assert meta[first] == ["review: outside_click, low_score (risk 0.812)"]
    assert meta[second] == ["review: fallback"]
    assert all(v is None for k, v in meta.items() if not k.startswith((first, second)))
