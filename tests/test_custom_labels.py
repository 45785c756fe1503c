"""labels.json (one annotation per click, fallbacks flagged), aligning a user's true masks to the clicks,
export to labelme / CVAT for review (polygon round trip), and DATASETS.WSSIS_REGISTER for train_net.py."""
import json
import os
import xml.etree.ElementTree as ET

import numpy as np
import pycocotools.mask as mask_util
import pytest
from PIL import Image, ImageDraw

from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog

from wssis_d2 import add_wssis_config
from wssis_d2.data.click_gt import align_gt_to_clicks
from wssis_d2.data.datasets import register_user_datasets
from wssis_d2.formats.importers import import_points
from wssis_d2.formats.review_export import export_cvat, export_labelme, mask_to_polygons, polygons_to_mask
from wssis_d2.data.synthetic import render_shapes_image
from wssis_d2.pseudo.labels import FALLBACK_FLAG, build_labels, fallback_disk, training_labels

from conftest import load_train_net, saved_catalogs

H, W = 40, 50
CATS = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]


def rle(mask):
    r = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    r["counts"] = r["counts"].decode("ascii")
    return r


def box_mask(x0, y0, x1, y1):
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


@pytest.fixture
def inputs():
    full = {"images": [{"id": 1, "file_name": "f.png", "height": H, "width": W}], "categories": CATS,
            "annotations": [{"id": 9, "image_id": 1, "category_id": 1, "segmentation": rle(box_mask(1, 1, 5, 5)),
                             "area": 16, "bbox": [1, 1, 4, 4], "iscrowd": 0}]}
    points = {"images": [{"id": 2, "file_name": "p.png", "height": H, "width": W},
                         {"id": 3, "file_name": "q.png", "height": H, "width": W}], "categories": CATS,
              "annotations": [{"id": k, "image_id": 2, "category_id": 2, "point_coords": [xy], "point_labels": [1],
                               "iscrowd": 0} for k, xy in ((1, [10.5, 10.5]), (2, [30.5, 20.5]), (3, [0.5, 39.5]))]}

    def pseudo_ann(pid, mask, score):
        r = rle(mask)
        return {"id": pid * 10, "image_id": 2, "category_id": 2, "segmentation": r, "area": int(mask.sum()),
                "bbox": mask_util.toBbox(r).tolist(), "score": score, "point": [0, 0], "level": 1, "point_ann_id": pid}
    pseudo = {"images": points["images"], "categories": CATS, "annotations": [
        pseudo_ann(1, box_mask(8, 8, 14, 14), 0.4), pseudo_ann(1, box_mask(9, 9, 12, 12), 0.9),  # two for click 1
        pseudo_ann(2, np.zeros((H, W), bool), 0.3)]}  # click 2: empty mask; click 3: absent
    return full, points, pseudo


def test_one_annotation_per_click_with_flagged_fallbacks(inputs):
    full, points, pseudo = inputs
    labels = build_labels(full, points, pseudo, fallback_radius=3)
    assert [img["id"] for img in labels["images"]] == [1, 2, 3]  # q.png has no click and is kept
    anns = labels["annotations"]
    assert [a["id"] for a in anns] == [1, 2, 3, 4] and anns[0]["segmentation"] == full["annotations"][0]["segmentation"]
    by_click = {a["point_ann_id"]: a for a in anns[1:]}
    assert sorted(by_click) == [1, 2, 3]
    assert by_click[1]["score"] == 0.9 and by_click[1]["area"] == 9 and "wssis_flag" not in by_click[1]
    for pid in (2, 3):
        a = by_click[pid]
        assert a["wssis_flag"] == FALLBACK_FLAG and a["score"] == 0.0 and a["category_id"] == 2
        m = mask_util.decode(a["segmentation"]).astype(bool)
        x, y = a["point"]
        assert m[int(y), int(x)] and a["area"] == m.sum()
    # the corner click's disk is clipped to the image: a quarter of the inner one's
    assert by_click[3]["area"] < by_click[2]["area"] / 2
    info = labels["info"]
    assert (info["num_pseudo_labels"], info["num_fallback_empty_mask"], info["num_fallback_no_pseudo_label"]) == (1, 1, 1)
    train, removed = training_labels(labels)
    assert removed == 2 and len(train["annotations"]) == 2 and train["info"]["num_flagged_excluded"] == 2


def test_labels_errors(inputs):
    full, points, pseudo = inputs
    pseudo["annotations"][0]["point_ann_id"] = 77
    with pytest.raises(ValueError, match="point_ann_id 77, which is no click of points"):
        build_labels(full, points, pseudo)
    points["images"][0]["id"] = 1
    with pytest.raises(ValueError, match=r"share image ids \[1\]"):
        build_labels(full, points, pseudo)


def test_fallback_disk_area_and_clipping():
    disk = fallback_disk(25.0, 20.0, 6.0, H, W)
    assert abs(disk.sum() - np.pi * 36) < 8
    assert fallback_disk(0.2, 0.2, 0.1, H, W).sum() == 1  # at least the click's own pixel


def test_align_gt_to_clicks_by_file_name_and_mask_under_the_click(inputs):
    _, points, _ = inputs
    gt = {"images": [{"id": 500, "file_name": "p.png", "height": H, "width": W},
                     {"id": 501, "file_name": "other.png", "height": H, "width": W}], "categories": CATS,
          "annotations": [{"id": 7000, "image_id": 500, "category_id": 2, "segmentation": rle(box_mask(25, 15, 35, 25))},
                          {"id": 7001, "image_id": 500, "category_id": 2, "segmentation": rle(box_mask(5, 5, 20, 20))},
                          {"id": 7002, "image_id": 500, "category_id": 1, "segmentation": rle(box_mask(40, 0, 50, 5))},
                          {"id": 7003, "image_id": 501, "category_id": 1, "segmentation": rle(box_mask(0, 0, 5, 5))}]}
    out = align_gt_to_clicks(gt, points)
    assert [img["id"] for img in out["images"]] == [2]
    ids = {a["id"] for a in out["annotations"]}
    assert [a["id"] for a in out["annotations"]][:2] == [2, 1] and 3 not in ids  # click 3 is on no mask
    assert out["info"]["num_matched"] == 2 and out["info"]["num_clicks_without_gt"] == 1
    assert out["info"]["num_gt_without_click"] == 1 and max(ids) > 3


def hole_free_masks(n=6):
    rng = np.random.default_rng(3)
    masks = []
    while len(masks) < n:
        _, instances = render_shapes_image(rng, 96, 96, 4, 16.0, "clean")
        masks += [i["mask"] for i in instances if i["category_id"] != 2]  # not rings (they have holes)
    return masks


def labelme_fill(polygons, h, w):
    """What labelme does with a polygon (labelme.utils.shape_to_mask: PIL ImageDraw.polygon)."""
    img = Image.new("L", (w, h), 0)
    for p in polygons:
        ImageDraw.Draw(img).polygon([tuple(v) for v in p], outline=1, fill=1)
    return np.asarray(img).astype(bool)


def test_polygon_round_trip_iou_on_hole_free_shapes():
    ious = []
    for m in hole_free_masks():
        polys = mask_to_polygons(m)
        ious.append(min(iou(polygons_to_mask(polys, *m.shape), m), iou(labelme_fill(polys, *m.shape), m)))
    assert min(ious) >= 0.95, ious


def test_holes_filled_and_parts_grouped(tmp_path):
    ring = np.zeros((H, W), bool)
    ring[5:25, 5:25] = True
    ring[10:20, 10:20] = False
    two = box_mask(30, 2, 35, 8) | box_mask(40, 30, 48, 38)
    assert len(mask_to_polygons(ring)) == 1 and polygons_to_mask(mask_to_polygons(ring), H, W).sum() == 400
    coco = {"images": [{"id": 1, "file_name": "x/p.png", "height": H, "width": W}], "categories": CATS,
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": rle(ring), "score": 0.5},
                            {"id": 2, "image_id": 1, "category_id": 2, "segmentation": rle(two),
                             "wssis_flag": "fallback", "score": 0.0}]}
    counts = export_labelme(coco, str(tmp_path / "lm"), str(tmp_path / "images"))
    assert counts["shapes"] == 3 and counts["multi-part masks"] == 1
    f = json.load(open(tmp_path / "lm" / "x" / "p.json"))
    assert f["imagePath"] == os.path.join("..", "..", "images", "x", "p.png")
    assert (f["imageHeight"], f["imageWidth"]) == (H, W)
    s = f["shapes"]
    assert [x["label"] for x in s] == ["a", "b", "b"] and s[1]["group_id"] == s[2]["group_id"] == 1
    assert s[0]["group_id"] is None and s[1]["flags"] == {"fallback": True}
    back = polygons_to_mask([x["points"] for x in s[1:]], H, W)
    assert iou(back, two) >= 0.95
    export_cvat(coco, str(tmp_path / "cv"))
    root = ET.parse(tmp_path / "cv" / "annotations.xml").getroot()
    polys = root.findall("image/polygon")
    assert root.find("version").text == "1.1" and len(polys) == 3
    assert polys[1].get("group_id") == polys[2].get("group_id") == "2" and polys[0].get("group_id") is None
    assert polys[1].find("attribute[@name='wssis_flag']").text == "fallback"


def test_points_export_to_cvat_and_back(tmp_path):
    img_dir = tmp_path / "images"
    img_dir.mkdir()
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(img_dir / "p.png")
    full = tmp_path / "full.json"
    full.write_text(json.dumps({"images": [], "annotations": [], "categories": CATS}))
    points = {"images": [{"id": 1, "file_name": "p.png", "height": H, "width": W}], "categories": CATS,
              "annotations": [{"id": 1, "image_id": 1, "category_id": 2, "point_coords": [[3.25, 7.5]],
                               "point_labels": [1], "iscrowd": 0}]}
    export_cvat(points, str(tmp_path / "cv"))
    import_points("cvat", str(tmp_path / "cv" / "annotations.xml"), str(img_dir), str(full), str(tmp_path / "o.json"))
    back = json.load(open(tmp_path / "o.json"))
    assert [(a["point_coords"], a["category_id"]) for a in back["annotations"]] == [([[3.25, 7.5]], 2)]


def test_wssis_register_points_and_masks_from_the_config(tmp_path):
    points = {"images": [{"id": 1, "file_name": "p.png", "height": H, "width": W}], "categories": CATS[::-1],
              "annotations": [{"id": 4, "image_id": 1, "category_id": 2, "point_coords": [[3.0, 3.0]],
                               "point_labels": [1], "iscrowd": 0}]}
    masks = {"images": [{"id": 1, "file_name": "f.png", "height": H, "width": W}], "categories": CATS,
             "annotations": [{"id": 1, "image_id": 1, "category_id": 2, "segmentation": rle(box_mask(1, 1, 9, 9)),
                              "bbox": [1, 1, 8, 8], "area": 64, "iscrowd": 0},
                             {"id": 2, "image_id": 1, "category_id": 1, "segmentation": rle(box_mask(20, 20, 25, 25)),
                              "bbox": [20, 20, 5, 5], "area": 25, "iscrowd": 0, "wssis_flag": "fallback"}]}
    (tmp_path / "p.json").write_text(json.dumps(points))
    (tmp_path / "m.json").write_text(json.dumps(masks))
    cfg = get_cfg()
    add_wssis_config(cfg)
    cfg.merge_from_list(["DATASETS.WSSIS_REGISTER", str([["u_points", str(tmp_path / "p.json"), str(tmp_path)],
                                                         ["u_masks", str(tmp_path / "m.json"), str(tmp_path)]])])
    with saved_catalogs():
        assert register_user_datasets(cfg.DATASETS.WSSIS_REGISTER) == ["u_points", "u_masks"]
        assert register_user_datasets(cfg.DATASETS.WSSIS_REGISTER) == []  # same files: left alone
        meta = MetadataCatalog.get("u_points")
        assert meta.label_kind == "points" and meta.thing_classes == ["a", "b"]
        (rec,) = DatasetCatalog.get("u_points")
        assert rec["annotations"][0]["category_id"] == 1 and rec["annotations"][0]["point_coords"] == [[3.0, 3.0]]
        assert MetadataCatalog.get("u_masks").evaluator_type == "coco"
        (rec,) = DatasetCatalog.get("u_masks")
        assert len(rec["annotations"]) == 1 and rec["annotations"][0]["category_id"] == 1  # flagged one left out
        with pytest.raises(ValueError, match="already registered with"):
            register_user_datasets([["u_masks", str(tmp_path / "p.json"), str(tmp_path)]])
        # train_net.py registers them from the config: no Python needed (imported here, so that the names
        # it registers at import are undone with the rest)
        train_net = load_train_net()
        args = train_net.default_argument_parser().parse_args(
            ["--config-file", os.path.join(os.path.dirname(__file__), "..", "configs", "CPU", "SOLOv2_tiny.yaml"),
             "DATASETS.WSSIS_REGISTER", str([["u2_masks", str(tmp_path / "m.json"), str(tmp_path)]]),
             "OUTPUT_DIR", str(tmp_path / "out")])
        train_net.setup(args)
        assert "u2_masks" in DatasetCatalog.list()
    mixed = dict(masks, annotations=masks["annotations"] + points["annotations"])
    (tmp_path / "x.json").write_text(json.dumps(mixed))
    with saved_catalogs(), pytest.raises(ValueError, match="mixes point-only annotations"):
        register_user_datasets([["u_x", str(tmp_path / "x.json"), str(tmp_path)]])
