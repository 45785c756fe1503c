"""The pipeline end to end on the tiny profile (12 generated 96-px images, 10-12 iterations per training
stage): every row filled, results.json schema, stage folders / markers / configs; a re-run skips every
stage; an interrupted training stage resumes from its checkpoint; planning and config rules.
About 30 s on 2 CPU cores."""
import json
import os
import pickle
import shutil

import pytest


from wssis_d2.evaluation import REPORT_KEYS
from wssis_d2.evaluation.microscopy import METRIC_KEYS
from wssis_d2.pipeline import (MARKER, MODEL_ROWS, PSEUDO_ROWS, load_pipeline_cfg, plan_stages, read_marker,
                               run_pipeline, stage_status)
from wssis_d2.pipeline import stage_table
from wssis_d2.pipeline import stages as stages_module
from wssis_d2.pipeline.model_stages import checkpoint_file, checkpoint_iterations
from wssis_d2.pipeline.compare import HEADLINES, format_comparison, headline_figures
from wssis_d2.pipeline.results import best_fixed_level

from wssis_d2.utils.errors import TRACEBACK_ENV, run_cli

from conftest import REPO, load_script, saved_catalogs

TINY = os.path.join(REPO, "configs", "pipeline", "shapes_tiny.yaml")
ALL_STAGES = ["data", "teacher", "pseudo_threshold", "pseudo_fixed", "pseudo_adaptive", "pseudo_oracle_size",
              "pseudo_oracle_best", "mrn_data", "mrn", "pseudo_adaptive_mrn", "pseudo_threshold_mrn",
              "student_threshold", "student_points",
              "student_points_mrn", "full_100"]
pytestmark = pytest.mark.usefixtures("one_thread_module")


@pytest.fixture(scope="module")
def catalogs():
    """Leave detectron2's catalogs as they were (the pipeline re-registers the shapes names)."""
    with saved_catalogs():
        yield


LAUNCHED = []


def _pickling_launch(main_func, num_gpus, dist_url=None, args=()):
    """detectron2's launch with one process, after the pickle round trip that spawned workers need."""
    assert num_gpus == 1
    main_func, args = pickle.loads(pickle.dumps((main_func, args)))
    LAUNCHED.append(args[0].__name__)
    main_func(*args)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, catalogs):
    out = tmp_path_factory.mktemp("pipeline") / "run"
    pcfg = load_pipeline_cfg(TINY, output_dir=str(out))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(stages_module, "launch", _pickling_launch)
        return pcfg, run_pipeline(pcfg, config_file=TINY)


def test_every_stage_writes_folder_marker_and_config(tiny_run):
    pcfg, out = tiny_run
    assert plan_stages(pcfg) == ALL_STAGES and out["ran"] == ALL_STAGES
    # every model stage went through launch with picklable arguments (what --num-gpus N spawns)
    assert LAUNCHED == (["train_stage"] + ["export_stage"] * 5 + ["train_stage"] + ["refine_stage"] * 2
                        + ["train_stage"] * 4)
    for stage in ALL_STAGES:
        folder = os.path.join(pcfg.OUTPUT_DIR, stage)
        marker = read_marker(folder)
        assert marker is not None and marker["stage"] == stage and marker["status"] == "done", stage
        assert os.path.isfile(os.path.join(folder, "config.yaml")), stage
        assert os.path.isfile(os.path.join(folder, "log.txt")), stage
        assert marker["seconds"] >= 0 and all(os.path.exists(p) for p in marker["outputs"].values())
        assert set(stage_table.STAGE[stage].produces) <= set(marker["outputs"]), stage  # what the table says
    # model stages save their effective detectron2 config
    teacher_cfg = open(os.path.join(pcfg.OUTPUT_DIR, "teacher", "config.yaml")).read()
    assert "MAX_ITER: 12" in teacher_cfg and "wssis_shapes_train_30p_s1_full" in teacher_cfg
    assert "MASK_FORMAT: bitmask" in open(os.path.join(pcfg.OUTPUT_DIR, "student_points", "config.yaml")).read()
    # the teacher kept the checkpoints the MRN data came from (50% and 83% of 12 iterations), whatever its
    # CHECKPOINT_PERIOD
    teacher = read_marker(os.path.join(pcfg.OUTPUT_DIR, "teacher"))
    assert teacher["checkpoint_iterations"] == [6, 10]
    assert os.path.isfile(os.path.join(pcfg.OUTPUT_DIR, "teacher", "model_0000005.pth"))
    assert os.path.isfile(os.path.join(pcfg.OUTPUT_DIR, "teacher", "model_0000009.pth"))
    samples = read_marker(os.path.join(pcfg.OUTPUT_DIR, "mrn_data"))["metrics"]["samples"]
    assert samples["train"] > 0 and samples["pairing"]["unmatched"] == 0
    assert os.path.isfile(os.path.join(pcfg.OUTPUT_DIR, "pipeline_config.yaml"))


def test_results_json_schema_every_row_filled(tiny_run):
    pcfg, out = tiny_run
    results = json.load(open(os.path.join(pcfg.OUTPUT_DIR, "results.json")))
    assert set(results["pseudo_labels"]) == set(PSEUDO_ROWS) and set(results["models"]) == set(MODEL_ROWS)
    for row, report in results["pseudo_labels"].items():
        assert report is not None and tuple(report) == REPORT_KEYS, row
    for row, ap in results["models"].items():
        assert isinstance(ap, float) and 0 <= ap <= 100, row
        # also measured on the validation set (for choosing), reported on the test set
        assert isinstance(results["models_val"][row], float) and 0 <= results["models_val"][row] <= 100, row
        for micro in (results["models_microscopy"][row], results["models_val_microscopy"][row]):
            assert set(METRIC_KEYS) <= set(micro) and micro["score_thr"] == 0.5, row
            assert micro["num_true"] > 0 and micro["count_error"] >= 0, row
            assert all(micro[k] is None or 0 <= micro[k] <= 1 for k in METRIC_KEYS if not k.startswith("count")), row
    for row, report in results["pseudo_labels"].items():
        assert set(METRIC_KEYS) <= set(report["microscopy"]) and report["microscopy"]["num_true"] > 0, row
    # no point belongs to a threshold detection: the mean IoU of each clicked object's best overlap
    assert results["pseudo_labels"]["threshold"]["mean_iou_rule"] == "best_overlap"
    assert 0 <= results["pseudo_labels"]["threshold"]["mean_iou"] <= 1
    # MRN on the threshold baseline's masks (no clicks): one refined mask per threshold pseudo-label
    def output(stage, key):
        return json.load(open(read_marker(os.path.join(pcfg.OUTPUT_DIR, stage))["outputs"][key]))
    refined = output("pseudo_threshold_mrn", "threshold_mrn")
    n_refined = refined["info"]["mrn_refinement"]["num_annotations"]
    assert n_refined == len(output("pseudo_threshold", "threshold")["annotations"])
    assert 0 < results["pseudo_labels"]["adaptive"]["coverage"] <= 1
    assert set(results["fixed_levels"]) == {"0", "1", "2", "3", "4"} and results["fixed_best_level"] in range(5)
    # the SSIS baseline at every threshold, with its own scores too; the row (and its student) is the best
    thresholds = results["thresholds"]
    assert set(thresholds) == {"0.1", "0.3", "0.5"} and results["best_threshold"] in (0.1, 0.3, 0.5)
    best = thresholds[f"{results['best_threshold']:g}"]
    assert results["pseudo_labels"]["threshold"] == best
    assert all(best["AP"] >= r["AP"] for r in thresholds.values())
    assert all(r["AP_scored"] is not None for r in thresholds.values())
    best_json = read_marker(os.path.join(pcfg.OUTPUT_DIR, "pseudo_threshold"))["outputs"]["threshold"]
    assert best_json.endswith(f"threshold_{results['best_threshold']:g}.json")
    merged = json.load(open(os.path.join(pcfg.OUTPUT_DIR, "student_threshold", "train.json")))
    assert merged["info"]["pseudo"]["source"] == best_json  # the "+unlabeled" student trains on the best
    # oracle_best: per click the best of the fixed levels, so no fixed level has a higher mean IoU (adaptive
    # can: same-cell collisions, evaluation/oracle_best.py)
    p = results["pseudo_labels"]
    assert p["oracle_best"]["mean_iou"] >= p["fixed_best"]["mean_iou"] - 1e-9
    for level, r in results["fixed_levels"].items():
        assert p["oracle_best"]["mean_iou"] >= r["mean_iou"] - 1e-9, level
    assert results["ratios"]["full_100"] in (1.0, None)
    assert results["mrn_settings"]["crop_size"] == 64 and results["mrn_settings"]["teacher_checkpoints"] == [0.5, 0.83]
    assert set(results["timings"]) == set(ALL_STAGES)
    assert results["meta"]["machine"]["cpu_count"] >= 1 and results["meta"]["stages_run"] == ALL_STAGES
    md = open(os.path.join(pcfg.OUTPUT_DIR, "results.md")).read()
    assert "student: full + points + MRN" in md and "Wall time per stage" in md and "adaptive + MRN" in md
    assert "64-px crops, heatmap sigma 3" in md and "Every threshold of the SSIS baseline" in md
    assert "| acc@0.5 | f1@0.5 | dsb | seg | count err |" in md and "detections with score >= 0.5" in md
    assert "threshold + MRN (no clicks" in md and "the bound" not in md


def test_comparison_of_two_runs(tiny_run, tmp_path, capsys, monkeypatch):
    """tools/compare_results.py on a real run and a run that lacks rows: one column each, the headline
    figures computed from the rows (and "-" where a row is missing), the paper's values beside."""
    pcfg, _ = tiny_run
    path = os.path.join(pcfg.OUTPUT_DIR, "results.json")
    results = json.load(open(path))
    fig = headline_figures(results)
    m, p = results["models"], results["pseudo_labels"]
    assert fig["student_gain"] == pytest.approx(m["student_points_mrn"] - m["teacher"])
    assert fig["adaptive_vs_fixed"] == pytest.approx(p["adaptive"]["AP"] - p["fixed_best"]["AP"])
    assert fig["oracle_gap"] == pytest.approx(p["oracle_size"]["AP"] - p["adaptive"]["AP"])
    assert fig["oracle_best_gap"] == pytest.approx(p["oracle_best"]["AP"] - p["adaptive"]["AP"])
    partial = {"models": {"teacher": 5.0, "full_100": 20.0, "student_points_mrn": None},
               "pseudo_labels": {"adaptive": {"AP": 30.0, "mean_iou": 0.5}, "threshold": {"AP": 12.5}}}
    fig2 = headline_figures(partial)
    assert fig2["teacher_vs_full"] == 25.0 and fig2["adaptive_vs_threshold"] == 17.5
    assert fig2["student_vs_full"] is None and fig2["mrn_gain"] is None
    assert headline_figures({"models": {"teacher": 1.0, "full_100": 0.0}})["teacher_vs_full"] is None
    other = tmp_path / "other.json"
    other.write_text(json.dumps(partial))
    md_path = tmp_path / "comparison.md"
    tool = load_script("tools/compare_results.py")  # in this process: the CLI's main and its run_cli
    run_cli(tool.main, ["--run", "real", path, "--run", "partial", str(other), "--output", str(md_path)])
    md = md_path.read_text()
    assert md == format_comparison([("real", results), ("partial", partial)])
    assert "| | real | partial |" in md and "| teacher (full labels only) | " + f"{m['teacher']:.1f} | 5.0 | 20.1 |" in md
    assert "| teacher / 100% model (%) | " in md and "| 25.0 | 50.6 |" in md
    assert "| adaptive | " + f"{p['adaptive']['AP']:.2f}" in md and "30.00 / 0.500 / - |" in md
    acc = results["models_microscopy"]["teacher"]["accuracy@0.5"]
    assert "## Models (microscopy: accuracy@0.5 / count error per image; score >= 0.5)" in md
    assert "| teacher (full labels only) | " + ("-" if acc is None else f"{acc:.3f}") + " / " in md
    assert len([line for line in md.splitlines() if line.startswith("| pseudo-labels:")]) == 6 == len(HEADLINES) - 3
    monkeypatch.delenv(TRACEBACK_ENV, raising=False)  # the one-line error, not the traceback
    with pytest.raises(SystemExit) as exit_info:
        run_cli(tool.main, ["--run", "x", str(tmp_path / "nope.json")])
    assert exit_info.value.code == 2 and "nope.json" in capsys.readouterr().err


def test_rerun_skips_finished_stages(tiny_run, monkeypatch):
    pcfg, _ = tiny_run

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished stage ran again")
    for name in ("prepare_data", "train_stage", "export_stage", "refine_stage", "merge_pseudo_label_files"):
        monkeypatch.setattr(stage_table, name, must_not_run)
    markers = {s: os.path.join(pcfg.OUTPUT_DIR, s, MARKER) for s in ALL_STAGES}
    mtimes = {s: os.stat(p).st_mtime_ns for s, p in markers.items()}
    again = run_pipeline(pcfg, config_file=TINY)
    assert again["ran"] == []
    assert {s: os.stat(p).st_mtime_ns for s, p in markers.items()} == mtimes
    assert all(status == "done" for _, status, _ in stage_status(pcfg))
    assert again["results"]["markdown"].count("| student: ") == 3


def test_interrupted_training_stage_resumes_from_its_checkpoint(tiny_run, tmp_path):
    pcfg, _ = tiny_run
    # A run of the teacher row only, on the same data, whose teacher stage was interrupted after 6 of
    # 12 iterations: its folder holds a checkpoint and last_checkpoint but no marker.
    out = tmp_path / "resume"
    teacher = out / "teacher"
    teacher.mkdir(parents=True)
    shutil.copy(os.path.join(pcfg.OUTPUT_DIR, "teacher", "model_0000005.pth"), teacher / "model_0000005.pth")
    (teacher / "last_checkpoint").write_text("model_0000005.pth")
    cfg = load_pipeline_cfg(TINY, ["DATA.ROOT", pcfg.DATA.ROOT, "ROWS.MODELS", "['teacher']",
                                   "ROWS.PSEUDO_LABELS", "[]"], output_dir=str(out))
    assert plan_stages(cfg) == ["data", "teacher"]
    assert [s[1] for s in stage_status(cfg)] == ["pending", "partial"]
    res = run_pipeline(cfg)
    marker = res["records"]["teacher"]
    assert marker["start_iter"] == 6 and marker["max_iter"] == 12
    iterations = [json.loads(line)["iteration"] for line in open(teacher / "metrics.json")]
    assert min(iterations) >= 6  # continued, did not start over
    assert os.path.isfile(teacher / "model_final.pth")
    results = json.load(open(out / "results.json"))
    assert results["models"]["teacher"] is not None
    assert all(v is None for k, v in results["models"].items() if k != "teacher")
    assert all(v is None for v in results["pseudo_labels"].values())


def test_plan_follows_rows():
    cfg = load_pipeline_cfg(TINY, ["ROWS.PSEUDO_LABELS", "['adaptive']", "ROWS.MODELS", "['student_points_mrn']"])
    assert plan_stages(cfg) == ["data", "teacher", "pseudo_adaptive", "mrn_data", "mrn", "pseudo_adaptive_mrn",
                                "student_points_mrn"]
    cfg = load_pipeline_cfg(TINY, ["ROWS.PSEUDO_LABELS", "[]", "ROWS.MODELS", "['full_100']"])
    assert plan_stages(cfg) == ["data", "full_100"]
    with pytest.raises(ValueError, match="unknown rows"):
        load_pipeline_cfg(TINY, ["ROWS.MODELS", "['student']"])
    cfg = load_pipeline_cfg(TINY, output_dir="/tmp/x")
    assert cfg.DATA.ROOT == "/tmp/x/data" and os.path.isabs(cfg.TEACHER.CONFIG)


@pytest.mark.parametrize("name", sorted(f for f in os.listdir(os.path.join(REPO, "configs", "pipeline"))
                                         if f.endswith(".yaml")))
def test_every_shipped_profile_loads_and_plans(name):
    """A key renamed in config.py but left in a shipped profile fails here, not after an hour of make
    benchmark (PSEUDO.THRESHOLD -> PSEUDO.THRESHOLDS did)."""
    path = os.path.join(REPO, "configs", "pipeline", name)
    opts = []
    if name.startswith("custom"):
        opts = ["DATA.CUSTOM.FULL_JSON", "f.json", "DATA.CUSTOM.POINTS_JSON", "p.json", "DATA.CUSTOM.IMAGE_ROOT", "i"]
    cfg = load_pipeline_cfg(path, opts)
    planned = plan_stages(cfg)
    assert planned[0] == "data" and "teacher" in planned
    for node in ("TEACHER", "MRN", "STUDENT", "FULL_100"):
        assert not cfg[node].CONFIG or os.path.isfile(cfg[node].CONFIG), (name, node, cfg[node].CONFIG)


def test_checkpoint_rules():
    assert checkpoint_iterations(1500, [0.5, 1.0]) == [750, 1500]
    assert checkpoint_file("d", 750, 1500) == os.path.join("d", "model_0000749.pth")
    assert checkpoint_file("d", 1500, 1500) == os.path.join("d", "model_final.pth")
    reports = {"a": {"AP": 1.0, "mean_iou": 0.2}, "b": {"AP": 3.0, "mean_iou": 0.1}, "c": {"AP": 3.0, "mean_iou": 0.3}}
    jobs = {"a": {"level": 0}, "b": {"level": 1}, "c": {"level": 2}}  # typed fields: names are not parsed
    assert best_fixed_level(reports, jobs) == 2 and best_fixed_level({}, {}) is None


def test_parallel_stages_run_in_worker_processes_after_their_inputs(tiny_run, tmp_path):
    """PARALLEL_STAGES 2: every stage but "data" runs in its own spawned process, none starts before the
    stages it reads are finished, and the table gets the same rows as a sequential run."""
    pcfg, _ = tiny_run
    cfg = load_pipeline_cfg(TINY, ["DATA.ROOT", pcfg.DATA.ROOT, "PARALLEL_STAGES", 2,
                                   "ROWS.PSEUDO_LABELS", "['adaptive']",
                                   "ROWS.MODELS", "['teacher', 'student_points', 'full_100']"],
                            output_dir=str(tmp_path / "par"))
    out = run_pipeline(cfg)
    stages = ["data", "teacher", "pseudo_adaptive", "student_points", "full_100"]
    assert sorted(out["ran"]) == sorted(stages)
    markers = {s: read_marker(os.path.join(cfg.OUTPUT_DIR, s)) for s in stages}
    assert markers["data"]["pid"] == os.getpid()
    pids = [markers[s]["pid"] for s in stages[1:]]
    assert os.getpid() not in pids and len(set(pids)) == len(pids)
    for stage in stages[1:]:
        for need in stage_table.stage_needs(stage, stages):
            assert markers[stage]["started"] >= markers[need]["finished"], (stage, need)
    results = json.load(open(os.path.join(cfg.OUTPUT_DIR, "results.json")))
    assert results["meta"]["parallel_stages"] == 2
    with open(os.path.join(cfg.OUTPUT_DIR, "results.md")) as f:
        assert "2 stage(s) at once" in f.read()
    assert all(results["models"][m] is not None for m in ("teacher", "student_points", "full_100"))
    assert results["pseudo_labels"]["adaptive"]["coverage"] > 0.9
    assert results["models"]["student_threshold"] is None


def test_review_alone_on_a_finished_shapes_run(tiny_run):
    """python -m wssis_d2.review on a finished run without a labels stage: the clicks and the refined
    pseudo-labels reviewed, scored against the true masks of the point images, the marker written."""
    from wssis_d2.review.__main__ import main as review_main

    pcfg, _ = tiny_run
    with saved_catalogs():
        record = review_main(["--pipeline-dir", pcfg.OUTPUT_DIR])
    review = json.load(open(record["outputs"]["review"]))
    points = json.load(open(os.path.join(pcfg.DATA.ROOT, "wssis_shapes", "splits",
                                         "train_30p_s1_points.json")))
    assert sorted(c["point_ann_id"] for c in review["clicks"]) == sorted(a["id"] for a in points["annotations"])
    assert review["info"]["mrn"] and review["info"]["labels"].endswith(os.path.join("pseudo_adaptive_mrn",
                                                                                    "pseudo_labels.json"))
    eff = review["measured"]["efficiency"]
    assert eff["num_clicks"] == len(points["annotations"]) and eff["curve"][-1] in (1.0, None)
    assert read_marker(os.path.join(pcfg.OUTPUT_DIR, "review")) is not None


def test_demo_tool_on_the_finished_tiny_run(tiny_run, capsys):
    """tools/demo.py on a finished run of its profile (every stage resumed, none re-run): the table beside the
    paper's numbers, comparison.png (a row per point image, a column per kind), the bar plot of the models."""
    import cv2

    pcfg, _ = tiny_run
    demo = load_script("tools/demo.py")
    out = demo.main(["--config-file", TINY, "--output-dir", pcfg.OUTPUT_DIR, "--overlays", "2"])
    printed = capsys.readouterr().out
    assert "paper (COCO 5%, R-101)" in printed and "| student: full + points + MRN |" in printed
    assert "33.7" in printed
    grid = cv2.imread(out["figures"]["comparison"])
    # 2 point images x 5 columns (the tiny profile fills every pseudo-label row) of 256-px cells
    assert grid is not None and grid.shape[1] == 5 * 256 and 2 * 256 <= grid.shape[0] <= 2 * 256 + 60
    assert grid.std() > 10  # not a blank canvas: the drawn images carry colour
    bars = cv2.imread(out["figures"]["models_ap"])
    assert bars is not None and bars.shape[:2] == (420, 800)
    assert not any(name.endswith(".tmp.png") for name in os.listdir(pcfg.OUTPUT_DIR))
