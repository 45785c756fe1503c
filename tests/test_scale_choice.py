"""Input scale and tiles chosen from the instance sizes (wssis_d2/data/scale_choice.py) on synthetic size
distributions, and their wiring into the custom pipeline's stage configs (pipeline/scale.py, stage_cfg):
the chosen keys reach the teacher / export / student configs, explicit OPTS win, AUTO_SCALE False turns it
off, other DATA.KINDs are untouched. No model is built or trained."""
import json
import logging
import os

import numpy as np
import pytest
from detectron2.config import get_cfg

from wssis_d2.config import add_wssis_config
from wssis_d2.data.scale_choice import (MAX_REDUNDANCY, MAX_SCALE, WARN_TILES, ModelFacts, choose_scale, coco_size_stats,
                                       detection_cap_opts, tile_layout)
from wssis_d2.modeling.tiling import tile_boxes
from wssis_d2.pipeline import load_pipeline_cfg
from wssis_d2.pipeline.data import prepare_data
from wssis_d2.pipeline.model_stages import stage_cfg
from wssis_d2.pipeline.results import _scale_line
from wssis_d2.pipeline.results import build_results
from wssis_d2.pipeline.scale import auto_opts, explicit_input_keys, run_scale_choice
from wssis_d2.pipeline.stages import jsonable

from conftest import REPO, saved_catalogs

MODEL = os.path.join(REPO, "configs", "CPU", "SOLOv2_mnv2_shapes.yaml")
CUSTOM = os.path.join(REPO, "configs", "pipeline", "custom.yaml")


@pytest.fixture(scope="module")
def facts():
    cfg = get_cfg()
    add_wssis_config(cfg)
    cfg.merge_from_file(MODEL)
    return ModelFacts.from_cfg(cfg)


def _choose(facts, hw, per_image, sizes):
    n = len(per_image)
    return choose_scale([hw] * n, sizes, per_image, facts)


def _rng():
    return np.random.default_rng(0)


def test_facts_of_the_cpu_config(facts):
    assert facts.num_grids[0] == 20 and facts.design_side == 192 and facts.median_band == (24.0, 96.0)
    assert facts.tile_input_side == 192


def test_microscopy_frames_get_tiles_at_about_native_resolution(facts):
    # 700 x 1100 frames, 150 nuclei of ~25 px: resized to 192 px they would be 7 px at 0.375 per finest cell
    c = _choose(facts, (700, 1100), [150] * 5, 25 * _rng().lognormal(0, 0.12, 750))
    assert c.mode == "tiles" and 0.9 < c.scale < 1.1 and c.base_scale == pytest.approx(192 / 700, rel=1e-4)
    assert c.tile_size * c.scale == pytest.approx(192)
    assert c.input_side == 192 and c.median_input_size >= 24
    assert c.p95_size <= c.tile_overlap <= c.tile_size // 2
    assert c.objects_per_cell < 0.05 and c.frac_outside_ranges == 0 and not c.warnings
    assert c.opts == ("INPUT.TILE.SIZE", c.tile_size, "INPUT.TILE.OVERLAP", float(c.tile_overlap),
                      "INPUT.TILE.SCALE", pytest.approx(c.scale),
                      # multi-scale training as the config's whole images: MIN_SIZE_TRAIN 160-224 over 192
                      "INPUT.TILE.TRAIN_SCALE_RANGE", (round(160 / 192, 4), round(224 / 192, 4)))
    layout = [r for r in c.reasons if r.startswith("layout:")]
    n, decoded = tile_layout(700, 1100, c.tile_size, c.tile_overlap)
    assert len(layout) == 1 and f"{n} tiles per 1100 x 700 image" in layout[0] and 1 < decoded < MAX_REDUNDANCY


def test_small_dense_objects_in_large_images_get_tiles_and_upscaling(facts):
    c = _choose(facts, (2000, 2000), [400] * 4, _rng().uniform(8, 12, 1600))
    assert c.mode == "tiles" and c.scale > 2 and c.tile_size < 100 and c.median_input_size >= 24
    assert not c.warnings


def test_tile_layout_counts_what_tile_boxes_lays():
    for h, w, t, o in [(700, 1100, 198, 26), (96, 96, 128, 8), (4000, 4000, 48, 18), (130, 1000, 64, 0)]:
        boxes = tile_boxes(h, w, t, o)
        n, decoded = tile_layout(h, w, t, o)
        assert n == len(boxes)
        area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).sum().item()
        assert decoded == pytest.approx(area / (h * w))


def test_tiny_objects_in_a_huge_image_keep_the_decoded_share_bounded_and_warn(facts):
    # 4000-px image, 20,000 objects of ~10 px (95th percentile ~23 px): 80-px tiles; an overlap of 1.5 x p95
    # would decode ~3x the pixels
    c = _choose(facts, (4000, 4000), [20000], 10 * _rng().lognormal(0, 0.5, 20000))
    assert c.mode == "tiles" and c.tile_size < 100
    n, decoded = tile_layout(4000, 4000, c.tile_size, c.tile_overlap)
    assert decoded <= MAX_REDUNDANCY and c.tile_overlap >= c.p95_size
    assert any(r.startswith("overlap lowered") for r in c.reasons)
    assert n > WARN_TILES and any("tiles per image" in w for w in c.warnings)


def test_576x720_frames_with_11_to_17_px_objects(facts):
    c = _choose(facts, (576, 720), [70] * 5, _rng().uniform(11, 17, 350))
    assert c.mode == "tiles" and 1.6 < c.scale < 1.9 and 100 < c.tile_size < 120 and not c.warnings


def test_large_sparse_objects_keep_whole_images_at_the_config_size(facts):
    c = _choose(facts, (1200, 1600), [3] * 5, _rng().uniform(300, 600, 15))
    assert c.mode == "whole" and c.tile_size == 0 and c.scale == c.base_scale and c.input_side == 192
    assert dict(zip(c.opts[0::2], c.opts[1::2]))["INPUT.MIN_SIZE_TEST"] == 192


def test_demo_shapes_change_nothing(facts):
    # the demo: 192-px images, 2-6 shapes each, log-uniform 16-170 px
    rng = _rng()
    counts = rng.integers(2, 7, 40)
    c = _choose(facts, (192, 192), list(counts), np.exp(rng.uniform(np.log(16), np.log(170), counts.sum())))
    assert c.mode == "whole" and c.scale == 1.0 and not c.warnings
    assert c.opts == ("INPUT.TILE.SIZE", 0, "INPUT.MIN_SIZE_TRAIN", (160, 176, 192, 208, 224),
                      "INPUT.MAX_SIZE_TRAIN", 320, "INPUT.MIN_SIZE_TEST", 192, "INPUT.MAX_SIZE_TEST", 320)


def test_slightly_small_objects_scale_whole_images(facts):
    # 160-px images, objects of ~18 px: scale 24 / 18 puts the shorter side at ~213 px (< 1.25 x 192): no tiles
    c = _choose(facts, (160, 200), [5] * 20, 18 * _rng().lognormal(0, 0.1, 100))
    assert c.mode == "whole" and c.scale > c.base_scale and 200 < c.input_side < 240
    o = dict(zip(c.opts[0::2], c.opts[1::2]))
    k = c.input_side / 192
    assert o["INPUT.MIN_SIZE_TEST"] == c.input_side and o["INPUT.MAX_SIZE_TEST"] == round(320 * k)
    assert o["INPUT.MIN_SIZE_TRAIN"] == tuple(round(v * k) for v in (160, 176, 192, 208, 224))


def test_objects_too_small_warn(facts):
    c = _choose(facts, (1000, 1000), [50] * 4, _rng().uniform(0.5, 1.5, 200))
    assert c.scale == MAX_SCALE and c.frac_too_small > 0.3
    assert any("too small" in w for w in c.warnings) and any("under 4 px" in w for w in c.warnings)


def test_few_instances_choose_with_a_warning(facts):
    """Issue 35: 5 instances are enough to choose (with the median's interval in the warning); none is not."""
    c = _choose(facts, (500, 500), [2, 3], [20, 30, 40, 50, 60])
    assert c.mode != "config" and c.opts and "only 5 instances" in c.warnings[0] and len(c.size_interval) == 2
    assert c.size_interval[0] < 40 < c.size_interval[1]
    assert choose_scale([], [], [], facts).opts == () and _choose(facts, (500, 500), [0, 0], []).mode == "config"


def test_detection_cap_only_raises():
    assert detection_cap_opts(150, 100, 500) == ["MODEL.SOLOV2.MAX_PER_IMG", 300, "MODEL.SOLOV2.NMS_PRE", 900]
    assert detection_cap_opts(51, 100, 500) == ["MODEL.SOLOV2.MAX_PER_IMG", 200, "MODEL.SOLOV2.NMS_PRE", 600]
    assert detection_cap_opts(50, 100, 500) == [] and detection_cap_opts(0, 100, 500) == []
    assert detection_cap_opts(400, 100, 5000)[3] == 5000  # NMS_PRE never lowered


def test_coco_size_stats():
    coco = {"images": [{"id": 1, "height": 10, "width": 20}, {"id": 2, "height": 30, "width": 40}],
            "annotations": [{"id": 1, "image_id": 1, "bbox": [0, 0, 4, 9]},
                            {"id": 2, "image_id": 2, "segmentation": [[0, 0, 8, 0, 8, 2, 0, 2]]},
                            {"id": 3, "image_id": 2, "bbox": [0, 0, 5, 5], "iscrowd": 1}]}
    hw, sizes, counts = coco_size_stats(coco)
    assert hw == [(10, 20), (30, 40)] and sizes == [6.0, 4.0] and counts == [1, 1]


# ------------------------------------------------------------------ the custom pipeline's stage configs

def _write_data(root, *, hw=(700, 1100), per_image=150, size=25.0, num=4):
    """FULL_JSON with square boxes of ``size`` px (sizes jittered), a one-click POINTS_JSON, IMAGE_ROOT."""
    rng = np.random.default_rng(1)
    h, w = hw
    images, anns = [], []
    for i in range(num):
        images.append({"id": i + 1, "file_name": f"full_{i}.png", "height": h, "width": w})
        for s in size * rng.lognormal(0, 0.1, per_image):
            x, y = rng.uniform(0, w - s), rng.uniform(0, h - s)
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 1, "bbox": [x, y, s, s],
                         "area": s * s, "iscrowd": 0,
                         "segmentation": [[x, y, x + s, y, x + s, y + s, x, y + s]]})
    cats = [{"id": 1, "name": "nucleus"}]
    full = {"images": images, "annotations": anns, "categories": cats}
    points = {"images": [{"id": 100, "file_name": "clicked.png", "height": h, "width": w}],
              "annotations": [{"id": 1, "image_id": 100, "category_id": 1, "point_coords": [[10.0, 10.0]]}],
              "categories": cats}
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    for name, data in (("full.json", full), ("points.json", points)):
        with open(os.path.join(root, name), "w") as f:
            json.dump(data, f)
    return ["DATA.CUSTOM.FULL_JSON", os.path.join(root, "full.json"), "DATA.CUSTOM.POINTS_JSON",
            os.path.join(root, "points.json"), "DATA.CUSTOM.IMAGE_ROOT", os.path.join(root, "images")]


def _records(choice):
    """The data stage's marker as the stages read it (through json)."""
    return {"data": {"metrics": {"scale_choice": json.loads(json.dumps(jsonable(choice)))}}}


def _cfgs(pcfg, records, tmp_path):
    """The detectron2 configs of the teacher, an export (PSEUDO.OPTS as export_stage passes them) and the
    student, as the stages build them."""
    d = str(tmp_path / "stage")
    return (stage_cfg(pcfg, "TEACHER", d, auto_opts=auto_opts(pcfg, records, "TEACHER")),
            stage_cfg(pcfg, "TEACHER", d, opts=list(pcfg.PSEUDO.OPTS), auto_opts=auto_opts(pcfg, records, "TEACHER")),
            stage_cfg(pcfg, "STUDENT", d, auto_opts=auto_opts(pcfg, records, "STUDENT")))


def test_stage_configs_receive_the_chosen_tiles(tmp_path, caplog):
    opts = _write_data(str(tmp_path))
    pcfg = load_pipeline_cfg(CUSTOM, opts, output_dir=str(tmp_path / "run"))
    with caplog.at_level(logging.INFO, logger="wssis_d2"):
        choice = run_scale_choice(pcfg)
    t = choice["nodes"]["TEACHER"]
    assert choice["enabled"] and t["mode"] == "tiles" and t["applied"] and t["explicit_keys"] == []
    assert "Input scale from" in caplog.text and "applied: INPUT.TILE.SIZE" in caplog.text
    for cfg in _cfgs(pcfg, _records(choice), tmp_path):
        assert cfg.INPUT.TILE.SIZE == t["tile_size"] > 0 and cfg.INPUT.TILE.OVERLAP == t["tile_overlap"]
        assert cfg.INPUT.TILE.SCALE == pytest.approx(t["scale"]) and cfg.INPUT.MIN_SIZE_TEST == 192
        # 150 objects per image: every one can be kept (and scored), not COCO's 100
        assert cfg.MODEL.SOLOV2.MAX_PER_IMG == 300 and cfg.MODEL.SOLOV2.NMS_PRE == 900
    assert t["densest_image"] == 150 and "Detections per image: the densest image has 150 objects" in caplog.text
    line = _scale_line(_records(choice)["data"]["metrics"]["scale_choice"])  # results.md
    assert "Detections per image raised for the densest image (150 objects): TEACHER MAX_PER_IMG 300" in line


def test_whole_image_choice_reaches_the_sizes(tmp_path):
    # 160 x 200 images with ~18-px objects: whole images scaled up a little (MIN_SIZE_TRAIN goes through json)
    opts = _write_data(str(tmp_path), hw=(160, 200), per_image=5, size=18.0, num=20)
    pcfg = load_pipeline_cfg(CUSTOM, opts, output_dir=str(tmp_path / "run"))
    choice = run_scale_choice(pcfg)
    s = choice["nodes"]["STUDENT"]
    assert s["mode"] == "whole" and 192 < s["input_side"] < 240
    cfg = _cfgs(pcfg, _records(choice), tmp_path)[2]
    assert cfg.INPUT.TILE.SIZE == 0 and cfg.INPUT.MIN_SIZE_TEST == s["input_side"]
    assert s["detection_opts"] == [] and cfg.MODEL.SOLOV2.MAX_PER_IMG == 100  # 5 objects per image: as configured
    assert isinstance(cfg.INPUT.MIN_SIZE_TRAIN, tuple) and cfg.INPUT.MIN_SIZE_TRAIN[2] == s["input_side"]


def test_explicit_opts_win(tmp_path, caplog):
    opts = _write_data(str(tmp_path)) + ["STUDENT.OPTS", "['INPUT.MIN_SIZE_TEST', 96, 'SOLVER.BASE_LR', 0.001]",
                                         "PSEUDO.OPTS", "['INPUT.TILE.SIZE', 300]"]
    pcfg = load_pipeline_cfg(CUSTOM, opts, output_dir=str(tmp_path / "run"))
    with caplog.at_level(logging.INFO, logger="wssis_d2"):
        choice = run_scale_choice(pcfg)
    assert choice["nodes"]["STUDENT"]["explicit_keys"] == ["INPUT.MIN_SIZE_TEST"]
    assert not choice["nodes"]["STUDENT"]["applied"] and "explicit OPTS win" in caplog.text
    # PSEUDO.OPTS keep the choice off the exports; the teacher's training still gets it
    t = choice["nodes"]["TEACHER"]
    assert t["applied"] and t["explicit_keys"] == [] and t["exports_explicit_keys"] == ["INPUT.TILE.SIZE"]
    assert not t["exports_applied"] and "exports: NOT applied: PSEUDO.OPTS set INPUT.TILE.SIZE" in caplog.text
    teacher, export, student = _cfgs(pcfg, _records(choice), tmp_path)
    assert teacher.INPUT.TILE.SIZE == choice["nodes"]["TEACHER"]["tile_size"]
    assert export.INPUT.TILE.SIZE == 300 and export.INPUT.TILE.SCALE == 1.0  # the user's keys, none of the choice
    assert student.INPUT.TILE.SIZE == 0 and student.INPUT.MIN_SIZE_TEST == 96 and student.SOLVER.BASE_LR == 0.001
    assert export.MODEL.SOLOV2.MAX_PER_IMG == student.MODEL.SOLOV2.MAX_PER_IMG == 300  # the cap is not a size
    assert explicit_input_keys(["INPUT.TILE.OVERLAP", 8, "INPUT.FORMAT", "RGB", "INPUT.MAX_SIZE_TRAIN", 9]) == [
        "INPUT.TILE.OVERLAP", "INPUT.MAX_SIZE_TRAIN"]


def test_auto_scale_false_turns_it_off(tmp_path):
    opts = _write_data(str(tmp_path))
    on = run_scale_choice(load_pipeline_cfg(CUSTOM, opts, output_dir=str(tmp_path / "run")))
    pcfg = load_pipeline_cfg(CUSTOM, opts + ["DATA.CUSTOM.AUTO_SCALE", False], output_dir=str(tmp_path / "run"))
    assert run_scale_choice(pcfg) == {"enabled": False}
    # a marker from an earlier run with the choice: not applied either
    assert auto_opts(pcfg, _records(on), "TEACHER") == []
    for cfg in _cfgs(pcfg, _records(on), tmp_path):
        assert cfg.INPUT.TILE.SIZE == 0 and cfg.INPUT.MIN_SIZE_TEST == 192


def test_other_kinds_are_untouched(tmp_path):
    pcfg = load_pipeline_cfg(os.path.join(REPO, "configs", "pipeline", "shapes_demo.yaml"),
                             output_dir=str(tmp_path / "run"))
    fake = _records({"enabled": True, "nodes": {"TEACHER": {"opts": ["INPUT.TILE.SIZE", 64]}}})
    assert auto_opts(pcfg, fake, "TEACHER") == []
    assert build_results(pcfg, {})["scale_choice"] is None


def test_data_stage_records_the_choice(tmp_path):
    opts = _write_data(str(tmp_path))
    pcfg = load_pipeline_cfg(CUSTOM, opts, output_dir=str(tmp_path / "run"))
    with saved_catalogs():
        result = prepare_data(pcfg)
    choice = result["metrics"]["scale_choice"]
    assert choice["nodes"]["TEACHER"]["mode"] == "tiles" and choice["nodes"]["STUDENT"]["applied"]
    assert build_results(pcfg, {"data": result})["scale_choice"] == choice
