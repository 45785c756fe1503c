"""tools/visualize.py draws a registered point dataset and a pseudo-label json (masks + points) to PNGs."""
import json
import os

import cv2
import numpy as np
import pytest

from wssis_d2.data import SHAPE_CATEGORIES, generate_shapes_dataset, register_point_instances, write_wssis_splits
from wssis_d2.utils.visualize import draw_instances

from conftest import load_script, saved_catalogs


def _tool():
    return load_script(os.path.join("tools", "visualize.py"), "visualize_tool")


@pytest.fixture
def catalogs():
    """Leave detectron2's catalogs as they were (the tool registers the standard names)."""
    with saved_catalogs():
        yield


def test_visualize_dataset_and_pseudo_json(tmp_path, catalogs):
    root = tmp_path / "shapes"
    image_root = str(root / "images")
    train = generate_shapes_dataset(str(root), num_images=4, image_size=64, seed=0, split="train")
    paths = write_wssis_splits(train, str(root / "splits"), seed=1, count=1, image_root=image_root, name="train")
    name = "_test_visualize_points"
    meta = {"thing_classes": [c["name"] for c in SHAPE_CATEGORIES],
            "thing_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(SHAPE_CATEGORIES)}}
    register_point_instances(name, meta, paths["points"], image_root)
    tool = _tool()
    written = tool.main(["--dataset", name, "--output", str(tmp_path / "points"), "--max-images", "2"])
    assert len(written) == 2 and all(p.endswith(".png") and os.path.isfile(p) for p in written)
    assert cv2.imread(written[0]).shape == (512, 512, 3)  # 64 px enlarged to ~512

    # a pseudo-label json: the GT masks of the point images as pseudo-labels with their points
    gt = json.load(open(paths["points_gt"]))
    points = {a["id"]: a["point_coords"][0] for a in json.load(open(paths["points"]))["annotations"]}
    gt["annotations"] = [dict(a, point=points[a["id"]], score=0.5, point_ann_id=a["id"]) for a in gt["annotations"]]
    gt["info"] = {"image_root": image_root}
    pseudo = tmp_path / "pseudo.json"
    pseudo.write_text(json.dumps(gt))
    written = tool.main(["--json", str(pseudo), "--output", str(tmp_path / "pseudo"), "--max-images", "5",
                         "--scale", "2"])
    assert len(written) == 3 and cv2.imread(written[0]).shape == (128, 128, 3)


def test_draw_instances_marks_masks_and_points():
    image = np.full((40, 40, 3), 128, np.uint8)
    mask = np.zeros((40, 40), bool)
    mask[10:30, 10:30] = True
    out = draw_instances(image, [{"label": "box", "mask": mask, "point": (20.5, 20.5)},
                                 {"label": "dot", "mask": None, "point": (5.5, 35.5)}], scale=1.0)
    assert out.shape == (40, 40, 3) and out.dtype == np.uint8
    assert not np.array_equal(out[20, 20], image[20, 20])  # the point over the mask
    assert not np.array_equal(out[35, 5], image[35, 5])  # the lone point
    assert np.array_equal(out[2, 38], image[2, 38])  # background untouched


def test_images_with_one_stem_in_two_folders_get_two_overlays(tmp_path):
    from wssis_d2.utils.visualize import render_records
    records = []
    for image_id, (folder, colour) in enumerate((("a", 40), ("b", 200)), start=1):
        (tmp_path / folder).mkdir()
        path = str(tmp_path / folder / "t001.png")
        cv2.imwrite(path, np.full((32, 32, 3), colour, np.uint8))
        records.append({"file_name": path, "image_id": image_id, "height": 32, "width": 32, "annotations": []})
    written = render_records(records, str, str(tmp_path / "out"), scale=1.0)
    assert [os.path.basename(p) for p in written] == ["t001.png", "t001_2.png"]
    assert [int(cv2.imread(p)[0, 0, 0]) for p in written] == [40, 200]  # neither overwrote the other
    named = render_records([dict(records[1], overlay_name="b__t001")], str, str(tmp_path / "out"), scale=1.0)
    assert os.path.basename(named[0]) == "b__t001.png"
