"""Issue 35: a handful of full labels. The input scale from 1-9 instances (the median's interval, density and
spacing from the clicks, clicked images of another size); MaskRefineNet samples topped up with synthetic ones
or the MaskRefineNet skipped; and the own-data pipeline on 3 full objects with a teacher that finds nothing:
no traceback, one annotation per click, a summary of what was missing."""
import json
import os
import shutil

import numpy as np
import pytest
from detectron2.config import get_cfg

from wssis_d2.config import add_wssis_config
from wssis_d2.data.custom_example import write_custom_example
from wssis_d2.data.importers import import_points
from wssis_d2.data.json_io import write_json_atomic
from wssis_d2.data.scale_choice import ModelFacts, choose_scale, click_stats, median_size_interval
from wssis_d2.pipeline import load_pipeline_cfg, run_pipeline
from wssis_d2.pipeline.few_labels import mrn_sample_jsons
from wssis_d2.utils.errors import WSSISInputError

from conftest import REPO, saved_catalogs

TINY = os.path.join(REPO, "configs", "pipeline", "custom_tiny.yaml")
# Teacher exports that find nothing: every candidate mask counts as empty (area <= its "stride").
DEAD_TEACHER = ["PSEUDO.OPTS", "['MODEL.SOLOV2.FPN_INSTANCE_STRIDES', '[100000, 100000, 100000, 100000, 100000]']"]
pytestmark = pytest.mark.usefixtures("one_thread_module")


@pytest.fixture(scope="module")
def facts():
    cfg = get_cfg()
    add_wssis_config(cfg)
    cfg.merge_from_file(os.path.join(REPO, "configs", "CPU", "SOLOv2_mnv2_shapes.yaml"))
    return ModelFacts.from_cfg(cfg)


def _points(xy_per_image, hw=(600, 800)):
    images, anns = [], []
    for i, xy in enumerate(xy_per_image):
        images.append({"id": i + 1, "file_name": f"{i}.png", "height": hw[0], "width": hw[1]})
        anns += [{"id": len(anns) + 1, "image_id": i + 1, "category_id": 1, "point_coords": [[float(x), float(y)]]}
                 for x, y in xy]
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "cell"}]}


def test_click_stats_nearest_neighbours_match_a_reference(monkeypatch):
    rng = np.random.default_rng(0)
    xy = [rng.uniform(0, 500, (n, 2)) for n in (40, 1, 0, 7)]
    monkeypatch.setattr("wssis_d2.data.scale_choice._NN_BLOCK", 16)  # several blocks per image
    c = click_stats(_points(xy))
    ref = []
    for p in xy:
        if len(p) > 1:
            d = np.hypot(*(p[:, None] - p[None]).transpose(2, 0, 1))
            np.fill_diagonal(d, np.inf)
            ref += list(d.min(1))
    assert c.num_clicks == 48 and c.per_image == (40, 1, 0, 7) and c.area == 4 * 600 * 800 and c.sides == (600,) * 4
    assert c.spacing == pytest.approx(np.median(ref))
    assert click_stats(_points([[], []])).spacing == 0.0


def test_median_size_interval():
    assert median_size_interval([30.0]) == ()
    lo, hi = median_size_interval([20, 30, 45])
    assert lo < 30 < hi
    lo2, hi2 = median_size_interval([20, 30, 45] * 10)  # more of the same spread: narrower
    assert lo < lo2 < 30 < hi2 < hi
    assert median_size_interval([30, 30, 30]) == (30.0, 30.0)


def test_one_instance_is_enough(facts):
    c = choose_scale([(727, 1026)] * 2, [33.0], [1, 0], facts)
    assert c.mode == "tiles" and c.median_input_size >= facts.median_band[0]  # 33-px rods no longer at 8.7 px
    assert "only 1 instance" in c.warnings[0] and "spread is unknown" in c.warnings[0] and c.size_interval == ()


def test_few_instances_density_and_spacing_from_the_clicks(facts):
    rng = np.random.default_rng(1)
    sizes = [30, 34, 38, 41]
    alone = choose_scale([(600, 800)], sizes, [4], facts)
    # 1000 clicks per clicked image, 15 px apart: crowded, and closer together than the full objects are large
    grid = np.stack(np.meshgrid(np.arange(40) * 15 + 100, np.arange(25) * 15 + 50), -1).reshape(-1, 2)
    clicks = click_stats(_points([grid + rng.uniform(-1, 1, grid.shape) for _ in range(3)]))
    c = choose_scale([(600, 800)], sizes, [4], facts, clicks=clicks)
    assert c.num_clicks == 3000 and c.objects_per_image == pytest.approx((4 + 3000) / 4)
    assert c.scale > alone.scale and any("density" in r for r in c.reasons)  # the density step now decides
    assert any("nearest-neighbour distance" in w and "smaller" in w for w in c.warnings)
    # enough full instances: the clicks do not enter the density
    many = choose_scale([(600, 800)], sizes * 5, [20], facts, clicks=clicks)
    assert many.num_clicks == 0 and many.objects_per_image == 20


def test_full_labels_on_a_crop_take_the_clicked_images_side(facts):
    clicks = click_stats(_points([[(100, 100), (300, 200)]] * 5, hw=(576, 720)))
    c = choose_scale([(180, 180)], [16, 18, 20, 22, 17], [5], facts, clicks=clicks)
    assert c.image_side == 576 and c.mode == "tiles" and any("crop" not in w and "clicked" in w for w in c.warnings)
    assert c.tile_size < 576 and 24 <= c.median_input_size <= 28


@pytest.fixture(scope="module")
def three_objects(tmp_path_factory):
    """A generated own dataset whose full json is one image with 3 objects, and its clicks."""
    root = tmp_path_factory.mktemp("few")
    p = write_custom_example(str(root / "data"), 12, 3, size=96, percent=30, max_instances=4)
    full = json.load(open(p["full"]))
    counts = {i: sum(a["image_id"] == i for a in full["annotations"]) for i in (img["id"] for img in full["images"])}
    keep = next(i for i, n in counts.items() if n == 3)
    full["images"] = [img for img in full["images"] if img["id"] == keep]
    full["annotations"] = [a for a in full["annotations"] if a["image_id"] == keep]
    write_json_atomic(full, p["full"])
    p["points"] = str(root / "data" / "points.json")
    import_points("labelme", p["clicks_labelme"], p["image_root"], p["full"], p["points"])
    return root, p


def _opts(p):
    return ["DATA.CUSTOM.FULL_JSON", p["full"], "DATA.CUSTOM.POINTS_JSON", p["points"], "DATA.CUSTOM.IMAGE_ROOT",
            p["image_root"], "DATA.CUSTOM.VAL_JSON", p["val"], "DATA.CUSTOM.POINTS_GT_JSON", p["points_gt"]]


def _empty_teacher_json(p, path):
    full = json.load(open(p["full"]))
    return write_json_atomic({"info": {"image_root": p["image_root"]}, "images": full["images"],
                              "categories": full["categories"], "annotations": []}, path)


def test_mrn_samples_topped_up_or_skipped(three_objects, tmp_path):
    _, p = three_objects
    teacher = [_empty_teacher_json(p, str(tmp_path / "iter_5.json"))]
    # one full image and VAL_FRACTION 0.5: it stays for training
    pcfg = load_pipeline_cfg(TINY, _opts(p) + ["MRN.VAL_FRACTION", 0.5, "MRN.MIN_SAMPLES", 7])
    got = mrn_sample_jsons(pcfg, teacher, p["full"], str(tmp_path))
    m, train = got["metrics"], json.load(open(got["outputs"]["mrn_train"]))
    assert m["teacher_samples"] == 0 and m["teacher_found"] == {"iter_5": 0} and m["full_objects"] == 3
    assert m["synthetic_samples"] == 9 == len(train["annotations"]) and "mrn_val" not in got["outputs"]  # 3 copies
    full_ids = {a["id"] for a in json.load(open(p["full"]))["annotations"]}
    assert {a["gt_ann_id"] for a in train["annotations"]} == full_ids
    assert all(a["iou"] < 1 for a in train["annotations"]) and m["mrn_skipped"] is None
    skip = load_pipeline_cfg(TINY, _opts(p) + ["MRN.FEW_SAMPLES", "skip"])
    got = mrn_sample_jsons(skip, teacher, p["full"], str(tmp_path / "skip"))
    assert "mrn_train" not in got["outputs"] and "MRN.FEW_SAMPLES skip" in got["metrics"]["mrn_skipped"]
    with pytest.raises(ValueError, match="MRN.FEW_SAMPLES must be"):
        load_pipeline_cfg(TINY, _opts(p) + ["MRN.FEW_SAMPLES", "maybe"])


def _labels_one_per_click(run_dir, p):
    labels = json.load(open(os.path.join(run_dir, "labels.json")))
    clicks = json.load(open(p["points"]))["annotations"]
    got = [a for a in labels["annotations"] if "point_ann_id" in a]
    assert sorted(a["point_ann_id"] for a in got) == sorted(c["id"] for c in clicks)
    return labels


def test_three_full_objects_and_a_teacher_that_finds_nothing(three_objects):
    """The issue's case: the teacher gives no mask to any click nor to its own training objects, so MRN has no
    teacher sample. The run ends with labels.json (every click a flagged fallback), a student and a summary;
    again with MRN.FEW_SAMPLES skip (resuming the first run's teacher)."""
    root, p = three_objects
    run = str(root / "run")
    with saved_catalogs():
        pcfg = load_pipeline_cfg(TINY, _opts(p) + DEAD_TEACHER, output_dir=run)
        out = run_pipeline(pcfg)
    labels = _labels_one_per_click(run, p)
    n_clicks = labels["info"]["num_clicks"]
    assert labels["info"]["num_fallback"] == n_clicks > 0
    assert out["records"]["labels"]["metrics"]["num_pseudo_holding_click"] == 0
    results = json.load(open(os.path.join(run, "results.json")))
    missing = "\n".join(results["few_labels"])
    assert "only 3 fully-labelled objects" in missing and "found 0 of its 3 training objects" in missing
    assert f"0 of {n_clicks} clicks got a pseudo-mask" in missing and "synthetic" in missing
    assert "## What was missing" in out["results"]["markdown"] and "% split (seed" not in out["results"]["markdown"]
    mrn_data = out["records"]["mrn_data"]["metrics"]
    assert mrn_data["teacher_samples"] == 0 and mrn_data["synthetic_samples"] >= 20
    assert os.path.isfile(out["records"]["mrn"]["outputs"]["weights"])
    assert results["models"]["student_points_mrn"] is not None
    teacher_choice = results["scale_choice"]["nodes"]["TEACHER"]
    assert teacher_choice["mode"] != "config" and teacher_choice["num_clicks"] == n_clicks

    skip_run = str(root / "run_skip")
    shutil.copytree(run, skip_run, ignore=shutil.ignore_patterns("mrn*", "pseudo_adaptive_mrn", "labels*",
                                                                 "student*", "results*"))
    with saved_catalogs():
        pcfg = load_pipeline_cfg(TINY, _opts(p) + DEAD_TEACHER + ["MRN.FEW_SAMPLES", "skip"], output_dir=skip_run)
        out = run_pipeline(pcfg)
    assert "teacher" not in out["ran"] and "MRN.FEW_SAMPLES skip" in out["records"]["mrn"]["metrics"]["skipped"]
    refined = json.load(open(out["records"]["pseudo_adaptive_mrn"]["outputs"]["adaptive_mrn"]))
    assert refined["annotations"] == [] and "MRN.FEW_SAMPLES skip" in refined["info"]["mrn_skipped"]
    _labels_one_per_click(skip_run, p)
    assert "MaskRefineNet skipped" in out["results"]["markdown"]


def test_opts_that_do_not_fit_stop_before_any_stage(three_objects):
    root, p = three_objects
    with saved_catalogs():
        pcfg = load_pipeline_cfg(TINY, _opts(p) + ["PSEUDO.OPTS", "['MODEL.SOLOV2.NO_SUCH_KEY', 3]"],
                                 output_dir=str(root / "bad"))
        with pytest.raises(WSSISInputError, match="PSEUDO.OPTS for the exports.*NO_SUCH_KEY"):
            run_pipeline(pcfg)
    assert not os.path.isdir(root / "bad" / "teacher")


def test_agreeing_pseudo_labels():
    from wssis_d2.data.coco_masks import encode_masks
    from wssis_d2.pseudo.click_agreement import agreeing_pseudo_labels

    m = np.zeros((3, 20, 30), bool)
    m[0, 2:8, 2:8] = True   # holds its click
    m[1, 10:15, 20:25] = True  # click outside
    rles = encode_masks(m)  # the third: empty
    anns = [{"id": k + 1, "image_id": 1, "category_id": 1, "segmentation": r, "point": pt}
            for k, (r, pt) in enumerate(zip(rles, ([5.5, 3.2], [5.0, 5.0], [1.0, 1.0])))]
    kept, removed = agreeing_pseudo_labels({"images": [{"id": 1, "height": 20, "width": 30}], "annotations": anns})
    assert [a["id"] for a in kept["annotations"]] == [1] and removed == 2


def test_click_round_makes_the_adaptive_pseudo_labels(three_objects):
    """PSEUDO.CLICK_ROUND: pseudo_round1 (first teacher) -> teacher_clicks (full + agreeing pseudo-labels) ->
    pseudo_adaptive from teacher_clicks (resumes the first run's teacher)."""
    root, p = three_objects
    run = str(root / "run_clicks")
    shutil.copytree(str(root / "run"), run, ignore=shutil.ignore_patterns(
        "pseudo*", "mrn*", "labels*", "student*", "results*"))
    with saved_catalogs():
        pcfg = load_pipeline_cfg(TINY, _opts(p) + ["PSEUDO.CLICK_ROUND", True, "ROWS.PSEUDO_LABELS", "['adaptive']",
                                                   "ROWS.MODELS", "['teacher']"], output_dir=run)
        out = run_pipeline(pcfg)
    assert out["ran"] == ["pseudo_round1", "teacher_clicks", "pseudo_adaptive", "labels"]
    cfg = json.load(open(out["records"]["pseudo_adaptive"]["outputs"]["adaptive"]))
    assert cfg["annotations"]
    export_cfg = open(os.path.join(run, "pseudo_adaptive", "config.yaml")).read()
    assert os.path.join(run, "teacher_clicks", "model_final.pth") in export_cfg
    train = json.load(open(os.path.join(run, "teacher_clicks", "train.json")))
    agreeing = json.load(open(os.path.join(run, "teacher_clicks", "pseudo_agreeing.json")))
    assert len(train["annotations"]) == 3 + len(agreeing["annotations"])
    assert "Click round (PSEUDO.CLICK_ROUND)" in out["results"]["markdown"]
    from wssis_d2.pseudo.click_agreement import agreeing_pseudo_labels
    holding = out["records"]["labels"]["metrics"]["num_pseudo_holding_click"]
    assert holding == len(agreeing_pseudo_labels(cfg)[0]["annotations"]) <= len(cfg["annotations"])
    _labels_one_per_click(run, p)


def test_sparse_window_and_crop():
    from wssis_d2.data.coco_masks import decode_segmentation, mask_annotation
    from wssis_d2.data.sparse_subset import crop_full, sparse_window

    m = np.zeros((4, 100, 120), bool)
    for k, (x, y) in enumerate([(10, 10), (30, 12), (80, 70), (100, 20)]):
        m[k, y:y + 8, x:x + 8] = True
    anns = [mask_annotation(mask, k + 1, 7, 1) for k, mask in enumerate(m)]
    boxes = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                      for a in anns])
    x0, y0, side = sparse_window(boxes, 100, 120, 2)
    img, crop = crop_full({"id": 7, "height": 100, "width": 120}, anns, (x0, y0, side), "c.png", 7)
    assert [a["id"] for a in crop] == [1, 2] and img == {"id": 7, "file_name": "c.png", "height": side, "width": side}
    for a in crop:  # the object lies whole in the crop: its mask is the original's, moved
        assert decode_segmentation(a["segmentation"], side, side).sum() == 64
    assert sparse_window(boxes, 100, 120, 5) is None
