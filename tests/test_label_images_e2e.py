"""Label images end to end (issue 20): a generated 5-frame sequence (96 x 128 uint16 label images, 8 elliptic
cells per frame; 8-bit PNG and 16-bit TIFF frames) -> ``labels_to_coco`` -> ``split_sequence`` by frame ranges
(full / points / points_gt / test / train_all, as cells_psc splits) -> the custom pipeline at test size with
the cells_psc profile's rows, the 100% model included (DATA.CUSTOM.TRAIN_ALL_JSON)."""
import json
import os

import cv2
import numpy as np
import pytest
import tifffile

from wssis_d2.data.json_io import write_json_atomic
from wssis_d2.formats.label_images import labels_to_coco, single_category
from wssis_d2.data.splits import SEQUENCE_OUTPUTS, split_sequence
from wssis_d2.pipeline import load_pipeline_cfg, plan_stages, run_pipeline

from conftest import REPO, saved_catalogs

TINY = os.path.join(REPO, "configs", "pipeline", "custom_tiny.yaml")
H, W, FRAMES = 96, 128, 5
SPLIT = {"full": (0, 2), "points": (2, 4), "test": (4, 5)}
pytestmark = pytest.mark.usefixtures("one_thread_module")


def frame(k):
    """(label image, image) of frame ``k``: 8 disjoint ellipses, one per 24 x 32 cell of a 2 x 4 grid, values
    k * 10 + 1 ...; the image is 8-bit for even frames, 16-bit (full range) for odd ones."""
    rng = np.random.default_rng(k)
    label = np.zeros((H, W), np.uint16)
    for c in range(8):
        cy, cx = 24 + 48 * (c // 4) + rng.integers(-6, 7), 16 + 32 * (c % 4) + rng.integers(-4, 5)
        axes = (int(rng.integers(6, 11)), int(rng.integers(5, 10)))
        cv2.ellipse(label, (int(cx), int(cy)), axes, float(rng.uniform(0, 180)), 0, 360, k * 10 + c + 1, -1)
    bright = (label > 0) * 120.0 + rng.normal(60, 12, (H, W))
    if k % 2 == 0:
        return label, np.clip(bright, 0, 255).astype(np.uint8)
    return label, np.clip(bright * 257, 0, 65535).astype(np.uint16)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("sequence")
    images, labels = root / "images", root / "labels"
    images.mkdir()
    labels.mkdir()
    for k in range(FRAMES):
        label, img = frame(k)
        tifffile.imwrite(labels / f"man_seg{k:03d}.tif", label)
        if img.dtype == np.uint8:
            assert cv2.imwrite(str(images / f"t{k:03d}.png"), img)
        else:
            tifffile.imwrite(images / f"t{k:03d}.tif", img)
    coco = labels_to_coco(str(images), str(labels), categories=single_category("cell"))
    splits = split_sequence(coco, SPLIT)
    paths = {name: write_json_atomic(s, str(root / f"{name}.json")) for name, s in splits.items()}
    return root, coco, splits, paths


def test_split_by_frame_ranges(data):
    _, coco, splits, _ = data
    assert coco["info"]["num_annotations"] == 8 * FRAMES and coco["info"]["pairing"] == "by name"
    frames = {name: [img["id"] - 1 for img in s["images"]] for name, s in splits.items()}
    assert frames == {"full": [0, 1], "points": [2, 3], "points_gt": [2, 3], "test": [4], "train_all": [0, 1, 2, 3]}
    assert [len(splits[n]["annotations"]) for n in SEQUENCE_OUTPUTS] == [16, 16, 16, 8, 32]
    assert sorted(a["id"] for a in splits["points"]["annotations"]) == \
        sorted(a["id"] for a in splits["points_gt"]["annotations"])
    assert splits["points"]["info"]["point_rule"] == "centroid" and splits["test"]["info"]["frames"] == [4, 4]
    with pytest.raises(ValueError, match="overlap"):
        split_sequence(coco, {"full": (0, 2), "points": (1, 4), "test": (4, 5)})


def test_label_images_through_the_custom_pipeline(data):
    root, _, splits, p = data
    opts = ["DATA.CUSTOM.FULL_JSON", p["full"], "DATA.CUSTOM.POINTS_JSON", p["points"],
            "DATA.CUSTOM.IMAGE_ROOT", str(root / "images"), "DATA.CUSTOM.VAL_JSON", p["test"],
            "DATA.CUSTOM.POINTS_GT_JSON", p["points_gt"], "DATA.CUSTOM.TRAIN_ALL_JSON", p["train_all"],
            "ROWS.PSEUDO_LABELS", "['threshold', 'adaptive', 'adaptive_mrn']",
            "ROWS.MODELS", "['teacher', 'student_points_mrn', 'full_100']"]
    with saved_catalogs():
        pcfg = load_pipeline_cfg(TINY, opts, output_dir=str(root / "run"))
        assert pcfg.DATASETS.TRAIN_ALL == "wssis_custom_train_all"
        assert plan_stages(pcfg)[-1] == "full_100" and "pseudo_threshold" in plan_stages(pcfg)
        run_pipeline(pcfg)
    out = pcfg.OUTPUT_DIR
    # every click has exactly one annotation in labels.json
    labels = json.load(open(os.path.join(out, "labels.json")))
    clicks = {a["id"]: a for a in splits["points"]["annotations"]}
    got = [a for a in labels["annotations"] if "point_ann_id" in a]
    assert sorted(a["point_ann_id"] for a in got) == sorted(clicks) and len(clicks) == 16
    assert all(a["image_id"] == clicks[a["point_ann_id"]]["image_id"] for a in got)
    assert labels["info"]["num_pseudo_labels"] + labels["info"]["num_fallback"] == 16
    results = json.load(open(os.path.join(out, "results.json")))
    # the pseudo-label rows, scored against points_gt
    for row in ("threshold", "adaptive", "adaptive_mrn"):
        assert isinstance(results["pseudo_labels"][row], dict) and "AP" in results["pseudo_labels"][row]
    assert results["skipped_rows"] == {}
    assert results["models"]["full_100"] is not None and results["models"]["teacher"] is not None
    train_all = json.load(open(os.path.join(out, "data", "done.json")))["metrics"]["train_all"]
    assert (train_all["images"], train_all["instances"]) == (4, 32)
    # the scale choice, recorded (custom_tiny's INPUT OPTS keep it from being applied)
    choice = results["scale_choice"]
    assert choice["enabled"] and choice["full_json"] == p["full"]
    assert set(choice["nodes"]) == {"TEACHER", "STUDENT", "FULL_100"}
    assert all(n["explicit_keys"] and not n["applied"] for n in choice["nodes"].values())
