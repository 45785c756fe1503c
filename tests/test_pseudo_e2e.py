"""End to end: train_net.py --eval-only with the pseudo-label config on a tiny generated shapes split
(random-init model) writes a pseudo-label json of the documented schema; size oracle and mask sets too."""
import json
import os

import pytest
from pycocotools.coco import COCO

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import default_argument_parser

from wssis_d2.data.datasets import register_dataset
from wssis_d2.data import SHAPE_CATEGORIES, generate_shapes_dataset, register_point_instances, write_wssis_splits
from wssis_d2.evaluation import REPORT_KEYS, pseudo_label_quality
from wssis_d2.pseudo import pseudo_label_dataset_dicts

from conftest import load_train_net

ROOT = os.path.join(os.path.dirname(__file__), "..")
CONFIG = os.path.join(ROOT, "configs", "pseudo", "SOLOv2_tiny_APS.yaml")
ANN_KEYS = {"id", "image_id", "category_id", "segmentation", "bbox", "area", "iscrowd", "score", "point",
            "level", "point_ann_id"}


pytestmark = pytest.mark.usefixtures("one_thread_module")


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    image_root = str(root / "images")
    train = generate_shapes_dataset(str(root), num_images=5, image_size=64, seed=0, split="train")
    paths = write_wssis_splits(train, str(root / "splits"), seed=1, count=1, image_root=image_root, name="train")
    meta = {"thing_classes": [c["name"] for c in SHAPE_CATEGORIES],
            "thing_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(SHAPE_CATEGORIES)}}
    names = {"points": "test_e2e_shapes_points", "points_gt": "test_e2e_shapes_points_gt"}
    register_point_instances(names["points"], dict(meta, points_gt_dataset=names["points_gt"]), paths["points"],
                             image_root)
    register_dataset(names["points_gt"], paths["points_gt"], "coco", image_root, dict(meta, label_kind="points_gt"))
    yield names, paths
    for name in names.values():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def _eval_only(output_dir, datasets, *opts):
    args = default_argument_parser().parse_args(
        ["--config-file", CONFIG, "--eval-only", "MODEL.WEIGHTS", "", "OUTPUT_DIR", str(output_dir),
         "DATASETS.TEST", repr(tuple(datasets)), "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "96",
         *opts]
    )
    return load_train_net().main(args)


def _check_schema(path, points_json, mode):
    data = json.loads(open(path).read())
    points = json.loads(open(points_json).read())
    assert set(data) == {"info", "images", "categories", "annotations"}
    assert data["info"]["mode"] == mode and data["info"]["config_file"].endswith("config.yaml")
    assert data["categories"] == points["categories"]
    assert [im["id"] for im in data["images"]] == [im["id"] for im in points["images"]]
    point_ids = {a["id"] for a in points["annotations"]}
    assert data["info"]["num_points"] == len(point_ids)
    assert data["info"]["num_annotations"] + data["info"]["num_points_without_mask"] == len(point_ids)
    for a in data["annotations"]:
        assert set(a) == ANN_KEYS and a["point_ann_id"] in point_ids
        assert a["category_id"] in {c["id"] for c in SHAPE_CATEGORIES}
    COCO(path)  # loads
    return data


def test_eval_only_exports_adaptive_pseudo_labels(split, tmp_path):
    names, paths = split
    res = _eval_only(tmp_path, [names["points"]])
    path = tmp_path / "pseudo_labels" / f"{names['points']}.json"
    data = _check_schema(str(path), paths["points"], "adaptive")
    assert res["pseudo_labels"]["num_annotations"] == len(data["annotations"]) > 0  # one set: not nested
    report = pseudo_label_quality(str(path), paths["points_gt"])
    assert tuple(report) == REPORT_KEYS and 0 <= report["coverage"] <= 1


def test_eval_only_oracle_on_points_and_mask_sets(split, tmp_path):
    names, paths = split
    export = str(tmp_path / "{dataset}.json")
    _eval_only(tmp_path, [names["points"], names["points_gt"]], "MODEL.WSSIS.PSEUDO_LABEL_MODE", "oracle_size",
               "MODEL.WSSIS.EXPORT_PATH", export)
    from_points = _check_schema(export.format(dataset=names["points"]), paths["points"], "oracle_size")
    from_masks = _check_schema(export.format(dataset=names["points_gt"]), paths["points"], "oracle_size")
    # the points computed from the masks are the split's points: same pseudo-labels
    strip = [{k: v for k, v in a.items() if k != "id"} for a in from_points["annotations"]]
    assert strip == [{k: v for k, v in a.items() if k != "id"} for a in from_masks["annotations"]]


def test_oracle_needs_a_gt_set(split):
    names, paths = split
    name = "test_e2e_points_without_gt"
    register_point_instances(name, {}, paths["points"], "images")
    try:
        with pytest.raises(ValueError, match="points_gt_dataset"):
            pseudo_label_dataset_dicts(name, need_sizes=True)
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    dicts = pseudo_label_dataset_dicts(names["points"], need_sizes=True)
    assert all("bbox" in a for d in dicts for a in d["annotations"])
