"""Pseudo-label quality report on hand-made cases with known answers."""
import json
import importlib.util
import os

import numpy as np
import pycocotools.mask as mask_util
import pytest

from wssis_d2.evaluation import REPORT_KEYS, compare_reports, format_report, pseudo_label_quality
from wssis_d2.evaluation.oracle_best import oracle_best_labels

H, W = 64, 64
ROOT = os.path.join(os.path.dirname(__file__), "..")


def _rle(mask):
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _box(y0, y1, x0, x1):
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


# (image id, annotation id, category id, mask): sizes 10x10 (small), 40x40 (medium), 12x20
GT_MASKS = [(1, 11, 3, _box(5, 15, 5, 15)), (1, 12, 7, _box(20, 60, 20, 60)), (2, 21, 3, _box(30, 42, 10, 30))]


def _gt(no_point=()):
    anns = []
    for image_id, ann_id, cat, m in GT_MASKS:
        rle = _rle(m)
        anns.append({"id": ann_id, "image_id": image_id, "category_id": cat, "segmentation": rle,
                     "area": float(m.sum()), "bbox": [float(v) for v in mask_util.toBbox(rle)], "iscrowd": 0})
    crowd = _box(0, 8, 40, 64)  # a crowd region: detections on it are ignored, it has no point
    anns.append({"id": 13, "image_id": 1, "category_id": 3, "iscrowd": 1, "area": float(crowd.sum()),
                 "bbox": [40.0, 0.0, 24.0, 8.0], "segmentation": {"size": [H, W], "counts": _uncompressed(crowd)}})
    return {"info": {"no_point_annotation_ids": list(no_point)},
            "images": [{"id": i, "file_name": f"{i}.jpg", "height": H, "width": W} for i in (1, 2)],
            "categories": [{"id": 3, "name": "a"}, {"id": 7, "name": "b"}],
            "annotations": anns}


def _uncompressed(mask):
    """COCO crowd RLE with a counts list (column-major run lengths starting with zeros)."""
    flat = mask.T.reshape(-1).astype(np.uint8)
    counts, current, run = [], 0, 0
    for v in flat:
        if v == current:
            run += 1
        else:
            counts.append(run)
            current, run = v, 1
    counts.append(run)
    return counts


def _pseudo(masks=None, mode="adaptive"):
    anns = []
    for k, (image_id, ann_id, cat, m) in enumerate(GT_MASKS):
        m = m if masks is None or ann_id not in masks else masks[ann_id]
        if m is None:
            continue
        rle = _rle(m)
        anns.append({"id": k + 1, "image_id": image_id, "category_id": cat, "segmentation": rle,
                     "bbox": [float(v) for v in mask_util.toBbox(rle)], "area": int(m.sum()), "iscrowd": 0,
                     "score": 0.3 + 0.1 * k, "point": [10.5, 10.5], "level": k % 2,
                     "point_ann_id": -1 if mode == "threshold" else ann_id})
    return {"info": {"mode": mode}, "images": [], "categories": [], "annotations": anns}


def test_perfect_pseudo_labels():
    r = pseudo_label_quality(_pseudo(), _gt())
    assert tuple(r) == REPORT_KEYS
    assert r["AP"] == pytest.approx(100) and r["AP50"] == pytest.approx(100) and r["AP75"] == pytest.approx(100)
    assert r["APs"] == pytest.approx(100) and r["APm"] == pytest.approx(100) and r["APl"] is None
    assert r["mean_iou"] == pytest.approx(1.0) and r["coverage"] == pytest.approx(1.0)
    assert r["levels"] == {0: 2, 1: 1}
    assert "100.00" in format_report(r)


def test_detection_on_a_crowd_region_is_ignored():
    pseudo = _pseudo()
    extra = dict(pseudo["annotations"][0], id=99, segmentation=_rle(_box(0, 8, 40, 64)), point_ann_id=-1)
    pseudo["annotations"].append(extra)
    r = pseudo_label_quality(pseudo, _gt())
    assert r["AP"] == pytest.approx(100) and r["coverage"] == 1.0


def test_missing_point_and_shifted_mask():
    r = pseudo_label_quality(_pseudo({21: None}), _gt())
    assert r["coverage"] == pytest.approx(2 / 3) and r["mean_iou"] == pytest.approx(2 / 3), "no mask = IoU 0"
    assert r["AP"] < 100
    # 10 x 10 square shifted by 2 px: intersection 80, union 120
    r = pseudo_label_quality(_pseudo({11: _box(5, 15, 7, 17)}), _gt())
    assert r["mean_iou"] == pytest.approx((1 + 1 + 80 / 120) / 3) and r["coverage"] == 1.0
    assert r["AP50"] == pytest.approx(100) and r["AP75"] < 100


def test_no_point_annotations_and_empty_pseudo():
    r = pseudo_label_quality(_pseudo({21: None}), _gt(no_point=[21]))
    assert r["coverage"] == 1.0 and r["mean_iou"] == pytest.approx(1.0)
    r = pseudo_label_quality(_pseudo({11: None, 12: None, 21: None}), _gt())
    assert (r["AP"], r["APs"], r["APl"], r["coverage"], r["mean_iou"], r["levels"]) == (0.0, 0.0, None, 0.0, 0.0, {})


def test_threshold_mode_mean_iou_is_the_best_overlap_and_table():
    r = pseudo_label_quality(_pseudo(mode="threshold"), _gt())
    assert r["AP"] == pytest.approx(100) and r["coverage"] is None
    assert r["mean_iou"] == pytest.approx(1.0) and r["mean_iou_rule"] == "best_overlap"
    # a shifted square (IoU 80/120) and one object without any pseudo-label (0)
    r2 = pseudo_label_quality(_pseudo({11: _box(5, 15, 7, 17), 21: None}, mode="threshold"), _gt())
    assert r2["mean_iou"] == pytest.approx((80 / 120 + 1 + 0) / 3)
    table = compare_reports({"threshold": r, "adaptive": pseudo_label_quality(_pseudo(), _gt())}, print_table=False)
    lines = table.splitlines()
    assert len(lines) == 6 and lines[2].startswith("| threshold | 100.00") and "| 1.000* | - |" in lines[2]
    assert "| 1.000 | 1.000 |" in lines[3] and lines[5].startswith("mean_iou marked *")


def test_report_microscopy_metrics():
    """Hand-worked: image 1 has a 10x10 and a 40x40 object, image 2 a 12x20 one (the crowd region is no
    reference object). The 10x10 pseudo-label shifted by 2 px (IoU 80/120 = 0.667), the 12x20 one missing."""
    r = pseudo_label_quality(_pseudo({11: _box(5, 15, 7, 17), 21: None}), _gt())["microscopy"]
    # IoU >= 0.5: 2 TP, FP 0, FN 1; IoU >= 0.75: 1 TP, 1 FP, 2 FN
    assert r["accuracy@0.5"] == pytest.approx(2 / 3) and r["precision@0.5"] == 1.0
    assert r["recall@0.5"] == pytest.approx(2 / 3)
    assert r["f1@0.5"] == pytest.approx(4 / 5) and r["accuracy@0.75"] == pytest.approx(1 / 4)
    assert r["mean_matched_iou"] == pytest.approx((80 / 120 + 1) / 2)
    assert r["seg"] == pytest.approx((80 / 120 + 1 + 0) / 3)  # 80 px of 100 covered: > 50 %
    # DSB per image, IoU > t: image 1 TP 2 for t < 0.667 (t = 0.50..0.65: 4 thresholds), else TP 1, FP 1, FN 1
    # -> (4 * 1 + 6 * 1/3) / 10 = 0.6; image 2 no prediction -> 0
    assert r["dsb"] == pytest.approx((0.6 + 0) / 2)
    assert r["count_error"] == pytest.approx(0.5) and r["count_error_rel"] == pytest.approx(0.5)
    assert (r["num_true"], r["num_pred"], r["num_images"]) == (3, 2, 2)


def test_cli_writes_exactly_the_report_keys(tmp_path):
    (tmp_path / "p.json").write_text(json.dumps(_pseudo()))
    (tmp_path / "gt.json").write_text(json.dumps(_gt()))
    spec = importlib.util.spec_from_file_location("pseudo_label_report", os.path.join(ROOT, "tools",
                                                                                   "pseudo_label_report.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    tool.main(["--pseudo", str(tmp_path / "p.json"), "--gt", str(tmp_path / "gt.json"), "--json",
               str(tmp_path / "r.json")])
    report = json.loads((tmp_path / "r.json").read_text())
    assert list(report) == list(REPORT_KEYS) and report["levels"] == {"0": 2, "1": 1}


def test_report_sees_every_pseudo_label_of_a_crowded_image():
    """300 instances on one image, 300 exact pseudo-labels: COCOeval's default 100 detections per image
    would cap recall at 1/3; the report evaluates all of them."""
    h, w = 120, 200
    anns, pseudo = [], []
    for k in range(300):
        r, c = divmod(k, 20)
        m = np.zeros((h, w), bool)
        m[r * 8 : r * 8 + 6, c * 10 : c * 10 + 8] = True
        rle = _rle(m)
        anns.append({"id": k + 1, "image_id": 5, "category_id": 3, "segmentation": rle, "area": float(m.sum()),
                     "bbox": [float(v) for v in mask_util.toBbox(rle)], "iscrowd": 0})
        pseudo.append({"id": k + 1, "image_id": 5, "category_id": 3, "segmentation": rle, "score": 0.5,
                       "point_ann_id": k + 1, "level": 0})
    gt = {"images": [{"id": 5, "file_name": "5.jpg", "height": h, "width": w}],
          "categories": [{"id": 3, "name": "a"}], "annotations": anns}
    report = pseudo_label_quality({"info": {"mode": "adaptive"}, "annotations": pseudo}, gt)
    assert report["AP"] == pytest.approx(100.0) and report["AP50"] == pytest.approx(100.0)
    assert report["mean_iou"] == pytest.approx(1.0) and report["coverage"] == pytest.approx(1.0)
    assert report["levels"] == {0: 300}


def test_scored_ap_uses_the_pseudo_labels_own_scores():
    """Two detections of one object: with every score 1 the wrong one (file order first) ranks equal to
    the right one; with its own lower score it ranks last, so the scored AP is the higher one."""
    wrong = {"image_id": 1, "category_id": 3, "segmentation": _rle(_box(30, 40, 30, 40)), "iscrowd": 0,
             "score": 0.05, "point_ann_id": -1, "level": -1}
    pseudo = _pseudo(mode="threshold")
    pseudo["annotations"] = [wrong] + pseudo["annotations"]
    r = pseudo_label_quality(pseudo, _gt())
    assert r["AP_scored"] == pytest.approx(100) and r["AP"] < 100
    r = pseudo_label_quality(_pseudo(), _gt())
    assert r["AP_scored"] == pytest.approx(r["AP"])


def _level_file(masks, level):
    p = _pseudo(masks, mode="fixed")
    p["info"]["settings"] = {"fixed_level": level}
    for a in p["annotations"]:
        a["level"] = level
    return p


def test_oracle_best_keeps_each_clicks_best_level():
    # level 0: click 11 exact, 12 shifted (IoU 0.6), 21 missing; level 1: 11 shifted, 12 exact, 21 exact;
    # level 2: everything exact but 11 (missing): ties with level 1 go to level 1 (the finer)
    files = [_level_file({12: _box(20, 60, 30, 70), 21: None}, 0),
             _level_file({11: _box(5, 15, 7, 17)}, 1),
             _level_file({11: None}, 2)]
    best = oracle_best_labels(files, _gt())
    got = {a["point_ann_id"]: a["level"] for a in best["annotations"]}
    assert got == {11: 0, 12: 1, 21: 1}
    assert best["info"]["clicks_per_source"] == [1, 2, 0] and best["info"]["num_points_without_mask"] == 0
    assert [a["id"] for a in best["annotations"]] == [1, 2, 3]
    report = pseudo_label_quality(best, _gt())
    assert report["mean_iou"] == pytest.approx(1.0)
    for f in files:  # the bound, by construction
        assert report["mean_iou"] >= pseudo_label_quality(f, _gt())["mean_iou"]
    # a click without a mask on any level stays without one
    none = oracle_best_labels([_level_file({21: None}, 0)], _gt())
    assert {a["point_ann_id"] for a in none["annotations"]} == {11, 12}
    assert none["info"]["num_points_without_mask"] == 1
    with pytest.raises(ValueError):
        oracle_best_labels([], _gt())
