"""PointWSSIS splits: exact sizes, disjoint, complete, seeded; points files carry points only."""
import copy
import json
import os

import pytest

from wssis_d2.data.coco_masks import decode_segmentation
from wssis_d2.data.splits import make_wssis_splits, split_count, split_image_ids, write_wssis_splits
from wssis_d2.data.synthetic import generate_shapes_dataset


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    path = generate_shapes_dataset(str(tmp_path_factory.mktemp("shapes")), 20, image_size=96, seed=0)
    with open(path) as f:
        coco = json.load(f)
    # Add a polygon annotation and a crowd annotation to image 1 to cover both input kinds.
    polygon = [[10, 10, 20, 10, 20, 20, 10, 20]]
    crowd_rle = {"size": [96, 96], "counts": [0, 3, 93, 3, 93, 3, 9021]}  # uncompressed, 3x3 corner
    coco["annotations"].append({"id": 9001, "image_id": 1, "category_id": 4, "iscrowd": 0, "area": 100.0,
                                "bbox": [10, 10, 10, 10], "segmentation": polygon})
    coco["annotations"].append({"id": 9002, "image_id": 1, "category_id": 1, "iscrowd": 1, "area": 9.0,
                                "bbox": [0, 0, 3, 3], "segmentation": crowd_rle})
    return path, coco


@pytest.mark.parametrize("n,percent,expected",
                         [(1000, 5, 50), (30, 5, 2), (10, 1, 1), (7, 50, 4), (7, 100, 7)])
def test_split_count_rule(n, percent, expected):
    assert split_count(n, percent=percent) == expected


@pytest.mark.parametrize("percent", [1, 5, 10, 50])
def test_split_exact_disjoint_complete_deterministic(percent):
    ids = list(range(3, 2003, 2))  # 1000 non-contiguous ids
    full, points = split_image_ids(ids, percent=percent, seed=1)
    assert len(full) == round(percent * 10) and len(full) + len(points) == 1000
    assert not set(full) & set(points) and set(full) | set(points) == set(ids)
    assert len(set(full)) == len(full), "sampled without replacement"
    assert (full, points) == split_image_ids(list(reversed(ids)), percent=percent, seed=1)
    assert full != split_image_ids(ids, percent=percent, seed=2)[0]


def test_split_count_and_errors():
    assert len(split_image_ids(range(10), count=3, seed=0)[0]) == 3
    with pytest.raises(ValueError):
        split_image_ids(range(10), count=11, seed=0)
    with pytest.raises(ValueError):
        split_image_ids(range(10), percent=0, seed=0)
    with pytest.raises(ValueError):
        split_image_ids([1, 1, 2], count=1, seed=0)


def test_points_file_has_points_only(shapes):
    path, coco = shapes
    out = make_wssis_splits(copy.deepcopy(coco), json_file=path, seed=1, count=5, point_rule="random",
                            image_root="/imgs")
    full, points, gt = out["full"], out["points"], out["points_gt"]
    full_ids, point_ids = {i["id"] for i in full["images"]}, {i["id"] for i in points["images"]}
    assert len(full_ids) == 5 and len(point_ids) == 15 and not full_ids & point_ids
    assert point_ids == {i["id"] for i in gt["images"]}
    assert {a["image_id"] for a in full["annotations"]} <= full_ids
    assert len(full["annotations"]) + len(gt["annotations"]) == len(coco["annotations"])
    for ann in points["annotations"]:
        assert set(ann) == {"id", "image_id", "category_id", "point_coords", "point_labels", "iscrowd"}
        assert ann["point_labels"] == [1] and ann["iscrowd"] == 0 and len(ann["point_coords"]) == 1
    assert "segmentation" not in json.dumps(points)
    # ids match between points and points_gt; crowd annotations are in points_gt only.
    gt_by_id = {a["id"]: a for a in gt["annotations"]}
    noncrowd = {i for i, a in gt_by_id.items() if not a["iscrowd"]}
    assert {a["id"] for a in points["annotations"]} == noncrowd
    images = {i["id"]: i for i in gt["images"]}
    for ann in points["annotations"]:
        g = gt_by_id[ann["id"]]
        assert (g["image_id"], g["category_id"]) == (ann["image_id"], ann["category_id"])
        image = images[g["image_id"]]
        mask = decode_segmentation(g["segmentation"], image["height"], image["width"])
        x, y = ann["point_coords"][0]
        assert mask[int(y), int(x)], "the point lies inside its true mask"
    info = points["info"]
    assert info["seed"] == 1 and info["count"] == 5 and info["point_rule"] == "random"
    assert info["source"] == os.path.abspath(path) and info["image_root"] == "/imgs"


def test_crowd_annotation_stays_out_of_points(shapes):
    path, coco = shapes
    for seed in range(20):  # find a seed that puts image 1 among the point images
        out = make_wssis_splits(copy.deepcopy(coco), json_file=path, seed=seed, count=1)
        if 1 in {i["id"] for i in out["points"]["images"]}:
            break
    assert 9002 not in {a["id"] for a in out["points"]["annotations"]}
    assert 9001 in {a["id"] for a in out["points"]["annotations"]}
    assert [a["iscrowd"] for a in out["points_gt"]["annotations"] if a["id"] == 9002] == [1]


def test_write_is_atomic_and_deterministic(shapes, tmp_path):
    path, _ = shapes
    paths = write_wssis_splits(path, str(tmp_path), seed=3, percent=25, point_rule="interior")
    assert sorted(os.listdir(tmp_path)) == sorted(
        f"shapes_25p_s3_{k}.json".replace("shapes", os.path.splitext(os.path.basename(path))[0])
        for k in ("full", "points", "points_gt"))
    first = {k: open(p).read() for k, p in paths.items()}
    write_wssis_splits(path, str(tmp_path), seed=3, percent=25, point_rule="interior")
    assert first == {k: open(p).read() for k, p in paths.items()}
    assert len(os.listdir(tmp_path)) == 3, "no temporary files left behind"


@pytest.mark.parametrize("edit,message", [
    (lambda c: c["annotations"][0].update(image_id=12345), "image_id not in"),
    (lambda c: c["annotations"][0].update(category_id=3), "category_id 3 not in"),
    (lambda c: c["annotations"][0].pop("segmentation"), "no segmentation"),
])
def test_bad_input_errors_name_file_and_ids(shapes, edit, message):
    path, coco = shapes
    coco = copy.deepcopy(coco)
    edit(coco)
    ann = coco["annotations"][0]
    with pytest.raises(ValueError, match=message) as e:
        # Whether annotation 0 lands in a full or a point image, the error names file and ids.
        make_wssis_splits(coco, json_file=path, seed=0, count=1)
    assert path in str(e.value) and f"annotation id {ann['id']}" in str(e.value)


def test_pointsup_input_passes_through(shapes):
    path, coco = shapes
    coco = copy.deepcopy(coco)
    full_ids, _ = split_image_ids([i["id"] for i in coco["images"]], count=5, seed=0)
    for ann in coco["annotations"]:
        if ann["image_id"] not in full_ids:  # PointSup style: several points, 0/1 labels, no mask
            for key in ("segmentation", "bbox", "area"):
                ann.pop(key)
            ann["point_coords"], ann["point_labels"] = [[1.0, 2.0], [3.5, 4.5]], [0, 1]
    out = make_wssis_splits(copy.deepcopy(coco), json_file=path, seed=0, count=5)
    assert out["points_gt"] is None, "no masks on the point images: nothing to evaluate against"
    assert out["points"]["annotations"]
    assert all(a["point_coords"] == [[1.0, 2.0], [3.5, 4.5]] and a["point_labels"] == [0, 1]
               for a in out["points"]["annotations"])
    # A fully-labeled image without masks is an error.
    with pytest.raises(ValueError, match="needs masks"):
        make_wssis_splits(coco, json_file=path, seed=0, count=19)
