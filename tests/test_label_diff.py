"""diff_pseudo_labels / tools/compare_labels.py on hand-made pseudo-labels with known differences."""
import copy
import json

import numpy as np

from wssis_d2.evaluation.label_diff import diff_pseudo_labels, format_label_diff

from conftest import load_script
from test_pseudo_quality import _box, _gt, _rle
from test_pseudo_quality import _pseudo as _pseudo_without_images


def _pseudo(**kwargs):
    """test_pseudo_quality's pseudo-labels with their images, as the exporter writes them."""
    return dict(_pseudo_without_images(**kwargs), images=_gt()["images"])


def test_identical_files():
    a = _pseudo()
    diff = diff_pseudo_labels(a, copy.deepcopy(a))
    assert diff["identical"] and diff["matched"] == 3 and diff["equal_masks"] == 3
    assert diff["mask_iou_mean"] == diff["mask_iou_min"] == 1.0 and diff["max_score_diff"] == 0
    assert "IDENTICAL" in format_label_diff("a", diff)


def test_each_kind_of_difference_is_counted():
    a = _pseudo()
    shifted = _box(22, 62, 20, 60)  # ann 12's 40x40 box moved 2 px down: IoU 38*40 / (42*40)
    b = _pseudo(masks={12: shifted, 21: None})  # 21 has no pseudo-label in b
    b["annotations"][0]["level"] = 4
    b["annotations"][0]["score"] += 0.25
    diff = diff_pseudo_labels(a, b)
    assert not diff["identical"]
    assert (diff["matched"], diff["only_a"], diff["only_b"]) == (2, 1, 0)
    assert diff["equal_levels"] == 1 and diff["equal_masks"] == 1 and diff["equal_classes"] == 2
    assert np.isclose(diff["mask_iou_min"], 38 / 42) and np.isclose(diff["mask_iou_mean"], (1 + 38 / 42) / 2)
    assert np.isclose(diff["max_score_diff"], 0.25)


def test_threshold_labels_match_by_mask_iou():
    a = _pseudo(mode="threshold")  # 3 masks without clicks (point_ann_id -1)
    b = copy.deepcopy(a)
    b["annotations"][0]["id"], b["annotations"][1]["id"] = 2, 1  # another score order: ids swapped
    b["annotations"][2]["segmentation"] = _rle(_box(0, 4, 50, 60))  # image 2: a mask elsewhere, IoU 0
    diff = diff_pseudo_labels(a, b)
    assert (diff["matched"], diff["only_a"], diff["only_b"]) == (2, 1, 1) and not diff["identical"]
    assert diff["equal_masks"] == 2 and diff["equal_ids"] == 0 and diff["mask_iou_min"] == 1.0


def test_cli_compares_two_run_folders(tmp_path, capsys):
    tool = load_script("tools/compare_labels.py")
    for run, masks in (("one", None), ("two", {11: _box(5, 15, 5, 16)})):
        (tmp_path / run / "pseudo_adaptive").mkdir(parents=True)
        (tmp_path / run / "pseudo_adaptive" / "points.json").write_text(json.dumps(_pseudo(masks=masks)))
        (tmp_path / run / "train.log.json").write_text(json.dumps({"iteration": 3}))  # not a label file
    (tmp_path / "one" / "labels.json").write_text(json.dumps(_pseudo()))  # only in run one
    diffs = tool.main([str(tmp_path / "one"), str(tmp_path / "two"), "--json", str(tmp_path / "d.json")])
    assert set(diffs) == {"labels.json", "pseudo_adaptive/points.json"} and diffs["labels.json"] is None
    assert diffs["pseudo_adaptive/points.json"]["equal_masks"] == 2
    out = capsys.readouterr().out
    assert "labels.json: missing in" in out and "0 of 2 files identical" in out
    assert json.loads((tmp_path / "d.json").read_text())["pseudo_adaptive/points.json"]["matched"] == 3
