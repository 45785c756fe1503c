"""Point-label loader, dataset registration and the two CLIs end to end."""
import importlib.util
import json
import os
import subprocess
import sys
import uuid

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from wssis_d2 import register_point_instances, register_wssis_splits
from wssis_d2.data.datasets import load_point_json

from conftest import free_builtin_names

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _unregister(names):
    for name in names:
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


@pytest.fixture
def pointsup_json(tmp_path):
    coco = {
        "images": [{"id": 5, "file_name": "a.jpg", "height": 20, "width": 30},
                   {"id": 6, "file_name": "b.jpg", "height": 20, "width": 30}],
        "categories": [{"id": 3, "name": "cat"}, {"id": 11, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 5, "category_id": 11, "iscrowd": 0,
             "point_coords": [[1.5, 2.5], [10.0, 11.0], [4.5, 3.5]], "point_labels": [0, 1, 1]},
            {"id": 2, "image_id": 5, "category_id": 3, "point_coords": [[7.5, 8.5]], "point_labels": [1]},
            {"id": 3, "image_id": 6, "category_id": 3, "iscrowd": 1},
        ],
    }
    path = tmp_path / "points.json"
    path.write_text(json.dumps(coco))
    return str(path), coco


def test_pointsup_file_positive_points_and_id_mapping(pointsup_json):
    path, _ = pointsup_json
    records = load_point_json(path, "/root")
    assert [r["image_id"] for r in records] == [5, 6]
    assert records[0]["file_name"] == os.path.join("/root", "a.jpg")
    a, b = records[0]["annotations"]
    assert a["point_coords"] == [[10.0, 11.0], [4.5, 3.5]] and a["point_labels"] == [1, 1]
    assert (a["category_id"], b["category_id"], a["id"]) == (1, 0, 1)  # ids 3, 11 -> 0, 1
    assert "bbox" not in a and "bbox_mode" not in a
    assert records[1]["annotations"] == [], "crowd annotations are skipped"


def test_metadata_mapping_is_used(pointsup_json):
    path, _ = pointsup_json
    name = f"test_points_{uuid.uuid4().hex}"
    try:
        register_point_instances(name, {"thing_classes": ["x", "dog", "cat"],
                                        "thing_dataset_id_to_contiguous_id": {7: 0, 11: 1, 3: 2}},
                                 path, "/root")
        records = DatasetCatalog.get(name)
        assert [a["category_id"] for a in records[0]["annotations"]] == [1, 2]
        meta = MetadataCatalog.get(name)
        assert meta.json_file == path and meta.label_kind == "points"
    finally:
        _unregister([name])


@pytest.mark.parametrize("edit,message", [
    (lambda a: a.pop("point_coords"), "no point"),
    (lambda a: a.update(point_labels=[0, 0, 0]), "no positive point"),
    (lambda a: a.update(category_id=99), "category_id 99"),
])
def test_loader_errors_name_file_and_ids(tmp_path, pointsup_json, edit, message):
    _, coco = pointsup_json
    edit(coco["annotations"][0])
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(coco))
    with pytest.raises(ValueError, match=message) as e:
        load_point_json(str(path), "/root")
    assert str(path) in str(e.value) and "annotation id 1 (image id 5)" in str(e.value)


def _run(script, *args):
    cmd = [sys.executable, os.path.join(REPO, "datasets", script), *map(str, args)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def test_clis_end_to_end_and_builtin_registration(tmp_path):
    with free_builtin_names():  # train_net.py's import (another test) registered them under the default root
        _clis_end_to_end_and_builtin_registration(tmp_path)


def _clis_end_to_end_and_builtin_registration(tmp_path):
    root = tmp_path / "d2"
    shapes = root / "wssis_shapes"
    _script("generate_shapes.py").main(["--output-dir", str(shapes), "--num-train", "10", "--num-val", "3",
                                        "--size", "64", "80", "--split-percents", "20"])
    out = _run("prepare_wssis_splits.py", "--json", shapes / "train.json", "--image-root", shapes / "images",
               "--percent", 50, "--seed", 1, "--point-rule", "random", "--output-dir", shapes / "splits")
    assert "train_50p_s1_points.json" in out
    with pytest.raises(SystemExit, match="missing.json does not exist"):
        _script("prepare_wssis_splits.py").main(["--json", str(tmp_path / "missing.json"), "--count", "1",
                                                 "--output-dir", str(tmp_path)])

    _check_builtin_registration(root)


def _check_builtin_registration(root):
    registered = register_wssis_splits(str(root))
    try:
        assert register_wssis_splits(str(root)) == [], "a second call registers nothing"
        for name in ("coco_2017_train_5p_s1_full", "coco_2017_train_1p_s1_points",
                     "coco_2017_train_50p_s1_points_gt", "wssis_shapes_train", "wssis_shapes_val",
                     "wssis_shapes_train_20p_s1_points", "wssis_shapes_train_50p_s1_full"):
            assert name in registered
        assert MetadataCatalog.get("coco_2017_train_5p_s1_full").evaluator_type == "coco"
        assert len(MetadataCatalog.get("coco_2017_train_5p_s1_points").thing_classes) == 80
        with pytest.raises(FileNotFoundError, match="prepare_wssis_splits.py"):
            DatasetCatalog.get("coco_2017_train_5p_s1_points")
        with pytest.raises(FileNotFoundError, match="prepare_wssis_splits.py"):
            DatasetCatalog.get("coco_2017_train_5p_s1_full")

        for p, n_full in ((20, 2), (50, 5)):
            full = DatasetCatalog.get(f"wssis_shapes_train_{p}p_s1_full")
            points = DatasetCatalog.get(f"wssis_shapes_train_{p}p_s1_points")
            gt = DatasetCatalog.get(f"wssis_shapes_train_{p}p_s1_points_gt")
            assert len(full) == n_full and len(points) == len(gt) == 10 - n_full
            assert {r["image_id"] for r in points} == {r["image_id"] for r in gt}
            assert os.path.isfile(points[0]["file_name"])
            n_points = sum(len(r["annotations"]) for r in points)
            assert n_points == sum(len(r["annotations"]) for r in gt) > 0
            assert all(0 <= a["category_id"] < 6 for r in points for a in r["annotations"])
            assert "segmentation" in full[0]["annotations"][0]
        meta = MetadataCatalog.get("wssis_shapes_train_50p_s1_points_gt")
        assert meta.evaluator_type == "coco" and meta.thing_dataset_id_to_contiguous_id[9] == 5
        assert len(DatasetCatalog.get("wssis_shapes_val")) == 3
    finally:
        _unregister(registered)


def _script(name):
    """Import a script of datasets/ as a module (to call its main in-process)."""
    spec = importlib.util.spec_from_file_location(name[:-3], os.path.join(REPO, "datasets", name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_idempotent_registration(pointsup_json, tmp_path):
    """register_dataset (every register_* goes through it): the same name with the same file is a no-op,
    with another file a clear error naming both; an unknown kind is refused."""
    from wssis_d2.data.datasets import register_dataset, registered_json
    from wssis_d2.mrn import register_mrn_dataset

    path, _ = pointsup_json
    name = f"test_points_{uuid.uuid4().hex}"
    other = str(tmp_path / "other.json")
    try:
        assert register_dataset(name, path, "points", "/root") is True
        assert register_dataset(name, path, "points", "/root") is False
        assert register_point_instances(name, {}, os.path.relpath(path), "/root") is False  # same file, relative
        assert registered_json(name) == path and registered_json(name + "_nope") is None
        for register in (lambda: register_dataset(name, other, "points", "/root"),
                         lambda: register_mrn_dataset(name, other)):
            with pytest.raises(ValueError, match=f"'{name}' is already registered with {path}, not {other}"):
                register()
        assert registered_json(name) == path, "the error leaves the registration alone"
        with pytest.raises(ValueError, match="Unknown dataset kind 'coco_json'"):
            register_dataset(name + "_x", path, "coco_json")
        assert name + "_x" not in DatasetCatalog.list()
    finally:
        _unregister([name])


def test_import_registers_both_meta_architectures():
    code = ("import wssis_d2; from detectron2.modeling import META_ARCH_REGISTRY; "
            "print(sorted(k for k in ('WSSISSOLOv2', 'MaskRefineNet') if k in META_ARCH_REGISTRY))")
    out = subprocess.run([sys.executable, "-W", "error::FutureWarning", "-c", code], capture_output=True,
                         text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO))
    assert out.returncode == 0, out.stderr  # no torch.jit.script FutureWarning either (an error here)
    assert out.stdout.split() == ["['MaskRefineNet',", "'WSSISSOLOv2']"]
