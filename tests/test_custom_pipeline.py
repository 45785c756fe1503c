"""Your own data end to end: generated shapes written as labelme click files (clicked images) and a COCO
file (full images) -> importer -> pipeline with DATA.KIND custom (tiny iterations) -> labels.json with
exactly one annotation per click and every image -> export to labelme. And a custom run without the
optional files (validation set, true masks of clicked images): those rows are skipped, not failed."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from wssis_d2.formats.custom_example import write_custom_example
from wssis_d2.formats.importers import import_points
from wssis_d2.formats.exports import export_labels
from wssis_d2.pipeline import load_pipeline_cfg, plan_stages, run_pipeline
from wssis_d2.pipeline.run import row_plan
from wssis_d2.review.__main__ import main as review_main

from conftest import REPO, saved_catalogs

TINY = os.path.join(REPO, "configs", "pipeline", "custom_tiny.yaml")
pytestmark = pytest.mark.usefixtures("one_thread_module")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("custom")
    p = write_custom_example(str(root / "data"), 12, 4, size=96, percent=30, max_instances=4)
    # an image nobody clicked on (no object in it): kept through every stage
    Image.fromarray(np.full((96, 96, 3), 90, np.uint8)).save(os.path.join(p["image_root"], "blank.jpg"))
    with open(os.path.join(p["clicks_labelme"], "blank.json"), "w") as f:
        json.dump({"version": "5.2.1", "flags": {}, "shapes": [], "imagePath": "../images/blank.jpg",
                   "imageData": None, "imageHeight": 96, "imageWidth": 96}, f)
    p["points"] = str(root / "data" / "points.json")
    import_points("labelme", p["clicks_labelme"], p["image_root"], p["full"], p["points"])
    return root, p


def _opts(p, val=True, gt=True):
    opts = ["DATA.CUSTOM.FULL_JSON", p["full"], "DATA.CUSTOM.POINTS_JSON", p["points"],
            "DATA.CUSTOM.IMAGE_ROOT", p["image_root"]]
    if val:
        opts += ["DATA.CUSTOM.VAL_JSON", p["val"]]
    if gt:
        opts += ["DATA.CUSTOM.POINTS_GT_JSON", p["points_gt"]]
    return opts


def test_imported_clicks_are_the_generated_ones(data):
    _, p = data
    points, gt = json.load(open(p["points"])), json.load(open(p["points_gt"]))
    assert len(points["images"]) == len(gt["images"]) + 1  # + the blank image
    assert len(points["annotations"]) == len(gt["annotations"])
    full_ids = {img["id"] for img in json.load(open(p["full"]))["images"]}
    assert not full_ids & {img["id"] for img in points["images"]}


def test_custom_pipeline_labels_json_one_annotation_per_click(data):
    root, p = data
    with saved_catalogs():
        pcfg = load_pipeline_cfg(TINY, _opts(p), output_dir=str(root / "run"))
        assert plan_stages(pcfg) == ["data", "teacher", "pseudo_adaptive", "mrn_data", "mrn", "pseudo_adaptive_mrn",
                                     "labels", "review", "student_points_mrn"]
        out = run_pipeline(pcfg)
    labels = json.load(open(os.path.join(pcfg.OUTPUT_DIR, "labels.json")))
    full, points = json.load(open(p["full"])), json.load(open(p["points"]))
    # every image of both inputs, with its id
    assert sorted(img["id"] for img in labels["images"]) == sorted(
        img["id"] for img in full["images"] + points["images"])
    # the true masks of the full images, unchanged
    full_ids = {img["id"] for img in full["images"]}
    got_full = [a for a in labels["annotations"] if a["image_id"] in full_ids]
    assert [a["segmentation"] for a in got_full] == [a["segmentation"] for a in full["annotations"]]
    # exactly one annotation per click, with a mask, box, area, score and the click
    clicks = {a["id"]: a for a in points["annotations"]}
    got = [a for a in labels["annotations"] if a["image_id"] not in full_ids]
    assert sorted(a["point_ann_id"] for a in got) == sorted(clicks)
    for a in got:
        c = clicks[a["point_ann_id"]]
        assert a["image_id"] == c["image_id"] and a["category_id"] == c["category_id"]
        assert a["point"] == c["point_coords"][0] and a["area"] > 0 and len(a["bbox"]) == 4 and "score" in a
        assert a["segmentation"]["size"] == [96, 96]
    info = labels["info"]
    assert info["num_pseudo_labels"] + info["num_fallback"] == len(clicks) == info["num_clicks"]
    assert info["pseudo_stage"] == "pseudo_adaptive_mrn"
    assert len({a["id"] for a in labels["annotations"]}) == len(labels["annotations"])
    # the student trained on labels.json without the flagged annotations
    train = json.load(open(os.path.join(pcfg.OUTPUT_DIR, "student_points_mrn", "train.json")))
    assert len(train["annotations"]) == len(labels["annotations"]) - info["num_fallback"]
    assert not any(a.get("wssis_flag") for a in train["annotations"])
    assert train["info"]["num_flagged_excluded"] == info["num_fallback"]
    # results: quality rows filled against the kept-aside masks, the labels counts reported
    results = json.load(open(os.path.join(pcfg.OUTPUT_DIR, "results.json")))
    assert results["pseudo_labels"]["adaptive"]["coverage"] > 0.9
    assert results["labels"]["num_clicks"] == len(clicks) and results["labels"]["report"]["mean_iou"] is not None
    assert results["models"]["teacher"] is not None and results["models"]["student_points_mrn"] is not None
    assert results["skipped_rows"] == {}
    assert "labels.json: 13 images" in out["results"]["markdown"]
    assert f"## Models (segm mask AP on `{pcfg.DATA.CUSTOM.VAL_JSON}`)" in out["results"]["markdown"]  # the file
    # back to the tool: one labelme file per image, a polygon per mask part
    counts = export_labels(os.path.join(pcfg.OUTPUT_DIR, "labels.json"), "labelme", str(root / "review"))
    assert counts["images"] == 13 and counts["annotations"] == len(labels["annotations"])
    blank = json.load(open(root / "review" / "blank.json"))
    assert blank["shapes"] == [] and os.path.isfile(os.path.join(root / "review", blank["imagePath"]))
    clicked = next(img for img in points["images"] if any(a["image_id"] == img["id"] for a in got))
    some = json.load(open(root / "review" / (os.path.splitext(clicked["file_name"])[0] + ".json")))
    assert some["shapes"] and all(s["shape_type"] == "polygon" and len(s["points"]) >= 3 for s in some["shapes"])
    # the review stage (on by default in custom.yaml): every click ranked, scored against the true masks
    review = json.load(open(os.path.join(pcfg.OUTPUT_DIR, "review", "review.json")))
    assert sorted(c["point_ann_id"] for c in review["clicks"]) == sorted(clicks)
    assert all(0 <= c["risk"] <= 1 for c in review["clicks"]) and [i["rank"] for i in review["images"]] == list(
        range(1, len(review["images"]) + 1))
    eff = review["measured"]["efficiency"]
    assert eff["num_clicks"] == len(clicks) and set(eff["found"]) == {"10%", "20%", "50%"}
    assert review["measured"]["missed_clicks"]["removed"] == max(1, round(0.05 * len(clicks)))
    assert results["review"]["num_clicks"] == len(clicks)
    assert "- Review (review/review.md): " in out["results"]["markdown"]
    reviewed = os.path.join(pcfg.OUTPUT_DIR, "review", "labels_review.json")
    export_labels(reviewed, "cvat", str(root / "review_cvat"))
    xml = open(root / "review_cvat" / "annotations.xml").read()
    assert xml.count('name="wssis_risk"') >= len(clicks)


def test_custom_run_without_optional_files_skips_rows(data):
    root, p = data
    opts = _opts(p, val=False, gt=False) + ["ROWS.PSEUDO_LABELS", "['adaptive', 'oracle_size']",
                                            "ROWS.MODELS", "['teacher', 'full_100']"]
    with saved_catalogs():
        pcfg = load_pipeline_cfg(TINY, opts, output_dir=str(root / "run_bare"))
        _, _, skipped = row_plan(pcfg)
        assert set(skipped) == {"adaptive", "oracle_size", "full_100", "teacher"}
        assert plan_stages(pcfg) == ["data", "teacher", "pseudo_adaptive", "labels", "review"]
        run_pipeline(pcfg)
    results = json.load(open(os.path.join(pcfg.OUTPUT_DIR, "results.json")))
    assert results["models"]["teacher"] is None and results["pseudo_labels"]["adaptive"] is None
    assert set(results["skipped_rows"]) == set(skipped)
    labels = json.load(open(os.path.join(pcfg.OUTPUT_DIR, "labels.json")))
    assert labels["info"]["pseudo_stage"] == "pseudo_adaptive" and "report" not in results["labels"]
    assert labels["info"]["num_clicks"] == len(json.load(open(p["points"]))["annotations"])
    review = json.load(open(os.path.join(pcfg.OUTPUT_DIR, "review", "review.json")))  # no true masks: not scored
    assert len(review["clicks"]) == labels["info"]["num_clicks"] and "efficiency" not in review["measured"]
    # the stage alone on the finished folder, again with other settings (the click-free pass is kept)
    with saved_catalogs():
        record = review_main(["--pipeline-dir", pcfg.OUTPUT_DIR, "--redo", "REVIEW.DROP_CLICKS", "0.5"])
    again = json.load(open(record["outputs"]["review"]))
    assert again["settings"]["drop_clicks"] == 0.5 and again["measured"]["missed_clicks"]["removed"] == round(
        0.5 * len(review["clicks"]))
    assert [c["risk"] for c in again["clicks"]] == [c["risk"] for c in review["clicks"]]


def test_custom_config_rules(data):
    _, p = data
    with pytest.raises(ValueError, match="DATA.KIND custom needs DATA.CUSTOM.POINTS_JSON"):
        load_pipeline_cfg(TINY, ["DATA.CUSTOM.FULL_JSON", p["full"], "DATA.CUSTOM.IMAGE_ROOT", p["image_root"]])
    cfg = load_pipeline_cfg(TINY, _opts(p, val=False))
    assert cfg.DATASETS.TEST == "" and cfg.DATASETS.POINTS == "wssis_custom_points" and cfg.DATASETS.POINTS_GT
