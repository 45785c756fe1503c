"""Bad input files fail at load time with one clear line naming the file, the id and the key (issue 13:
cases 1 malformed json / missing keys / wrong types, 5 bad points, 3 category ids, 4 duplicated ids)."""
import copy
import json
import os
import subprocess
import sys

import pytest

from wssis_d2.data.datasets import load_point_json, register_user_datasets
from wssis_d2.data.validation import check_coco, load_coco
from wssis_d2.utils.errors import WSSISInputError, run_cli

from conftest import REPO, saved_catalogs

POINTS = {
    "images": [{"id": 5, "file_name": "a.jpg", "height": 20, "width": 30},
               {"id": 6, "file_name": "b.jpg", "height": 20, "width": 30}],
    "categories": [{"id": 3, "name": "cat"}, {"id": 11, "name": "dog"}],
    "annotations": [
        {"id": 1, "image_id": 5, "category_id": 11, "point_coords": [[10.0, 11.0]], "point_labels": [1]},
        {"id": 2, "image_id": 6, "category_id": 3, "point_coords": [[29.5, 19.5], [0, 0]], "point_labels": [1, 0]},
    ],
}


def _write(tmp_path, coco, name="bad.json"):
    path = tmp_path / name
    path.write_text(coco if isinstance(coco, str) else json.dumps(coco))
    return str(path)


def _edited(edit):
    coco = copy.deepcopy(POINTS)
    edit(coco)
    return coco


BAD_POINTS = [
    (lambda c: c["annotations"][1]["point_coords"].__setitem__(0, [31.0, 5.0]), r"point 0 \(31.0, 5.0\) is outside"),
    (lambda c: c["annotations"][1]["point_coords"].__setitem__(1, [3.0, 20.5]), r"point 1 \(3.0, 20.5\) is outside"),
    (lambda c: c["annotations"][1]["point_coords"].__setitem__(0, [float("nan"), 5.0]), "is not finite"),
    (lambda c: c["annotations"][1]["point_coords"].__setitem__(0, [float("inf"), 5.0]), "is not finite"),
    (lambda c: c["annotations"][1]["point_coords"].__setitem__(0, [-0.5, 5.0]), "is negative"),
    (lambda c: c["annotations"][1].pop("category_id"), "no 'category_id'"),
    (lambda c: c["annotations"][1].update(category_id=7), "category_id 7 is not in the categories"),
    (lambda c: c["annotations"][1].update(point_coords=[[1, 2, 3]]), "'point_coords' must be"),
    (lambda c: c["annotations"][1].update(point_labels=[1]), "'point_labels' must be"),
]


@pytest.mark.parametrize("edit,message", BAD_POINTS)
def test_bad_point_is_an_error_at_load_with_the_annotation_id(tmp_path, edit, message):
    path = _write(tmp_path, _edited(edit))  # json.dumps writes NaN / Infinity, which json.load reads back
    with pytest.raises(WSSISInputError, match=message) as e:
        load_point_json(path, "/root")
    assert str(e.value).startswith(f"{path}: annotation id 2 (image id 6): ")
    # registration (train_net.py setup, before the trainer is built) already refuses the file
    with saved_catalogs(), pytest.raises(WSSISInputError, match=message):
        register_user_datasets([["bad_points_set", path, "/root"]])


def test_points_on_the_image_border_are_accepted(tmp_path):
    coco = _edited(lambda c: c["annotations"][1].update(point_coords=[[30.0, 20.0], [0.0, 0.0]]))
    records = load_point_json(_write(tmp_path, coco), "/root")
    assert records[1]["annotations"][0]["point_coords"] == [[30.0, 20.0]]


BAD_FILES = [
    ('{"images": [{"id": 1, "file_na', "is not valid json"),  # truncated
    ("[1, 2]", "the top level must be a json object"),
    (_edited(lambda c: c.pop("annotations")), "missing key 'annotations'"),
    (_edited(lambda c: c.update(categories={"id": 3})), "key 'categories' must be a list, got dict"),
    (_edited(lambda c: c["images"][0].pop("width")), "image id 5: key 'width' must be a positive integer"),
    (_edited(lambda c: c["images"][1].update(height="20")), "image id 6: key 'height' must be a positive"),
    (_edited(lambda c: c["images"][0].update(id="5")), r"images\[0\]: key 'id' must be an integer"),
    (_edited(lambda c: c["images"][0].update(file_name=None)), "image id 5: key 'file_name' must be"),
    (_edited(lambda c: c["annotations"][0].pop("id")), r"annotations\[0\]: key 'id' must be an integer"),
    (_edited(lambda c: c["annotations"][0].update(image_id=9)), "annotation id 1 .*'image_id' is not an image"),
    (_edited(lambda c: c["annotations"][0].update(bbox=[0, 0, -1, 2])), "annotation id 1 .*key 'bbox' must be"),
    (_edited(lambda c: c["annotations"][0].update(segmentation="x")), "annotation id 1 .*key 'segmentation'"),
    (_edited(lambda c: c["categories"][1].update(id=3)), "duplicated category ids 3"),
    (_edited(lambda c: c["images"][1].update(id=5)), "duplicated image ids 5"),
    (_edited(lambda c: c["annotations"][1].update(id=1, image_id=5)), "duplicated annotation ids 1"),
]


@pytest.mark.parametrize("content,message", BAD_FILES)
def test_malformed_file_names_the_file_and_key(tmp_path, content, message):
    path = _write(tmp_path, content)
    with pytest.raises(WSSISInputError, match=message) as e:
        load_coco(path, "points")
    assert str(e.value).startswith(path)
    with saved_catalogs(), pytest.raises(WSSISInputError, match=message):
        register_user_datasets([["bad_set", path, "/root"]])


def test_category_gaps_and_id_zero_map_to_contiguous_ids(tmp_path):
    """Case 3: ids 0 (e.g. a background category), 3 and 11 are mapped by the explicit id mapping (sorted
    ids -> 0, 1, 2), in the metadata the pseudo-label export maps back through."""
    coco = _edited(lambda c: c["categories"].append({"id": 0, "name": "background"}))
    coco["annotations"][0]["category_id"] = 0
    path = _write(tmp_path, coco, "points.json")
    with saved_catalogs():
        register_user_datasets([["gap_set", path, "/root"]])
        from detectron2.data import DatasetCatalog, MetadataCatalog
        records = DatasetCatalog.get("gap_set")
        assert MetadataCatalog.get("gap_set").thing_dataset_id_to_contiguous_id == {0: 0, 3: 1, 11: 2}
        assert MetadataCatalog.get("gap_set").thing_classes == ["background", "cat", "dog"]
        assert [a["category_id"] for r in records for a in r["annotations"]] == [0, 1]


def test_instances_file_checks_masks_kind(tmp_path):
    coco = {"images": [{"id": 0, "file_name": "a.png", "height": 4, "width": 4}],
            "categories": [{"id": 1, "name": "x"}],
            "annotations": [{"id": 0, "image_id": 0, "category_id": 1, "segmentation": [[0, 0, 2, 0, 2, 2]],
                             "bbox": [0, 0, 2, 2], "area": 2, "iscrowd": 0}]}
    assert check_coco(coco, "mem.json") is coco  # ids 0 are fine here
    coco["annotations"][0]["category_id"] = 2
    with pytest.raises(WSSISInputError, match="mem.json: annotation id 0 .*category_id 2 is not in"):
        check_coco(coco, "mem.json")


def test_run_cli_prints_one_line_and_exits_2(capsys, monkeypatch):
    def main(argv):
        assert argv == ["--x"]
        raise WSSISInputError("f.json: annotation id 3 (image id 1): point 0 (-1, 2) is negative")

    monkeypatch.delenv("WSSIS_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as e:
        run_cli(main, ["--x"])
    assert e.value.code == 2
    assert capsys.readouterr().err == "error: f.json: annotation id 3 (image id 1): point 0 (-1, 2) is negative\n"
    with pytest.raises(WSSISInputError):
        run_cli(main, ["--x", "--traceback"])
    monkeypatch.setenv("WSSIS_TRACEBACK", "1")
    with pytest.raises(WSSISInputError):
        run_cli(main, ["--x"])


def test_train_net_bad_point_one_line_before_training(tmp_path):
    """train_net.py on a points file with a point outside its image: exit 2, one line naming the file and
    annotation id, no traceback, no training started."""
    path = _write(tmp_path, _edited(lambda c: c["annotations"][1]["point_coords"].__setitem__(0, [40, 5])))
    cmd = [sys.executable, os.path.join(REPO, "train_net.py"), "--config-file",
           os.path.join(REPO, "configs/CPU/SOLOv2_tiny.yaml"), "OUTPUT_DIR", str(tmp_path / "out"),
           "DATASETS.WSSIS_REGISTER", f"[['bad_points', '{path}', '{tmp_path}']]",
           "DATASETS.TRAIN", "('bad_points',)", "DATASETS.TEST", "()"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "WSSIS_TRACEBACK": ""})
    assert res.returncode == 2, res.stderr[-3000:]
    last = res.stderr.strip().splitlines()[-1]
    assert last == f"error: {path}: annotation id 2 (image id 6): point 0 (40, 5) is outside the image " \
                   "(width 30, height 20)"
    assert "Traceback" not in res.stderr
    assert not os.path.exists(tmp_path / "out" / "model_final.pth")
