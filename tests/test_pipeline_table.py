"""The stage table (wssis_d2/pipeline/stage_table.py): planning from ROWS against a reference of the rules
(every subset of the rows, shapes and custom), needs resolution, the table's own consistency, and a stage
added as one entry (an in-process body over an earlier stage's outputs) that plans, runs and resumes."""
import itertools
import os

import pytest

from wssis_d2.pipeline import MODEL_ROWS, PSEUDO_ROWS, StageRunner, load_pipeline_cfg, plan_stages, read_marker
from wssis_d2.pipeline import stage_table
from wssis_d2.pipeline.run import run_stage
from wssis_d2.pipeline.stage_table import STAGE, STAGES, Stage, in_process, labels_source, stage_needs, stage_of_row

from conftest import REPO

TINY = os.path.join(REPO, "configs", "pipeline", "shapes_tiny.yaml")


def reference_plan(pseudo, models, custom):
    """The planning rules written out per stage (what the pipeline planned before the table)."""
    pseudo, models = set(pseudo), set(models)
    refine_adaptive = "adaptive_mrn" in pseudo or "student_points_mrn" in models
    need_mrn = refine_adaptive or "threshold_mrn" in pseudo
    need = {
        "teacher": bool(pseudo) or bool(models - {"full_100"}) or custom,
        "pseudo_threshold": bool({"threshold", "threshold_mrn"} & pseudo) or "student_threshold" in models,
        "pseudo_fixed": bool({"fixed_best", "oracle_best"} & pseudo),
        "pseudo_adaptive": bool({"adaptive", "adaptive_mrn"} & pseudo)
        or bool({"student_points", "student_points_mrn"} & models) or custom,
        "pseudo_oracle_size": "oracle_size" in pseudo,
        "pseudo_oracle_best": "oracle_best" in pseudo,
        "mrn_data": need_mrn, "mrn": need_mrn, "pseudo_adaptive_mrn": refine_adaptive,
        "pseudo_threshold_mrn": "threshold_mrn" in pseudo,
        "labels": custom,
    }
    return (["data"] + [name for name, needed in need.items() if needed]
            + [m for m in ("student_threshold", "student_points", "student_points_mrn", "full_100") if m in models])


def _subsets(rows):
    return [list(c) for n in range(len(rows) + 1) for c in itertools.combinations(rows, n)]


def test_plan_from_rows_matches_the_reference_for_every_subset(tmp_path):
    cfg = load_pipeline_cfg(TINY, output_dir=str(tmp_path))
    custom = load_pipeline_cfg(TINY, ["DATA.KIND", "custom", "DATA.CUSTOM.FULL_JSON", "f.json",
                                      "DATA.CUSTOM.POINTS_JSON", "p.json", "DATA.CUSTOM.IMAGE_ROOT", "im",
                                      "DATA.CUSTOM.POINTS_GT_JSON", "gt.json", "DATA.CUSTOM.TRAIN_ALL_JSON", "a.json"],
                               output_dir=str(tmp_path))
    for base, is_custom in ((cfg, False), (custom, True)):
        for pseudo, models in itertools.product(_subsets(PSEUDO_ROWS), _subsets(MODEL_ROWS)):
            c = base.clone()
            c.defrost()
            c.ROWS.PSEUDO_LABELS, c.ROWS.MODELS = pseudo, models
            assert plan_stages(c) == reference_plan(pseudo, models, is_custom), (pseudo, models, is_custom)


def test_table_is_consistent():
    names = [s.name for s in STAGES]
    assert len(set(names)) == len(names) and names[0] == "data" and STAGE["data"].when(None)
    for i, stage in enumerate(STAGES):  # table order is a run order: what a stage reads comes before it
        assert all(names.index(n) < i for n in stage.needs + stage.after), stage.name
    for row in PSEUDO_ROWS + MODEL_ROWS:  # every row of the results table is filled by one stage
        assert [s.name for s in STAGES if row in s.pseudo_rows + s.model_rows] == [stage_of_row(row)]
    exports = {s.name: (s.mode, s.thresholds, s.levels) for s in STAGES if s.mode}
    assert exports == {"pseudo_threshold": ("threshold", None, None), "pseudo_fixed": ("fixed", None, None),
                       "pseudo_adaptive": ("adaptive", None, None), "pseudo_oracle_size": ("oracle_size", None, None),
                       "pseudo_round1": ("adaptive", None, None)}
    order = sorted(names, key=lambda n: STAGE[n].priority)
    assert order[:4] == ["data", "teacher", "full_100", "pseudo_adaptive"]
    assert order[-2:] == ["pseudo_fixed", "pseudo_oracle_best"]


def test_needs_resolution():
    shapes = ["data", "teacher", "pseudo_adaptive", "mrn_data", "mrn", "pseudo_adaptive_mrn", "student_points",
              "student_points_mrn"]
    assert stage_needs("pseudo_adaptive_mrn", shapes) == ("pseudo_adaptive", "mrn")
    assert stage_needs("student_points_mrn", shapes) == ("data", "pseudo_adaptive_mrn")
    # custom: labels.json is made from the refined labels when MRN is planned; their student trains on it
    custom = shapes[:3] + shapes[3:6] + ["labels"] + shapes[6:]
    assert labels_source(custom) == "pseudo_adaptive_mrn"
    assert stage_needs("labels", custom) == ("data", "pseudo_adaptive", "pseudo_adaptive_mrn")
    assert stage_needs("student_points_mrn", custom)[-1] == "labels"
    assert "labels" not in stage_needs("student_points", custom)
    without_mrn = ["data", "teacher", "pseudo_adaptive", "labels", "student_points"]
    assert labels_source(without_mrn) == "pseudo_adaptive"
    assert stage_needs("labels", without_mrn) == ("data", "pseudo_adaptive")
    assert stage_needs("student_points", without_mrn) == ("data", "pseudo_adaptive", "labels")
    # the review reads the labels, the refined and the teacher's masks, and the teacher (its click-free pass)
    assert stage_needs("review", custom + ["review"]) == ("data", "teacher", "pseudo_adaptive", "pseudo_adaptive_mrn",
                                                          "labels")
    assert stage_needs("review", shapes) == ("data", "teacher", "pseudo_adaptive", "pseudo_adaptive_mrn")


def test_an_in_process_stage_is_one_entry(tmp_path, monkeypatch):
    """A stage whose body is a plain function of an earlier stage's outputs: one Stage entry plans it (from
    its row or ``when``), runs it in this process after what it needs, writes its marker, and skips it when
    finished."""
    calls = []

    def count_files(ctx):
        calls.append(ctx.stage.name)
        return {"outputs": {}, "metrics": {"n": len(ctx.runner.records["data"]["outputs"])}}

    extra = Stage("file_count", in_process(count_files), needs=("data",), when=lambda pcfg: True, priority=5)
    monkeypatch.setattr(stage_table, "STAGES", STAGES + (extra,))
    monkeypatch.setitem(STAGE, "file_count", extra)
    cfg = load_pipeline_cfg(TINY, ["ROWS.PSEUDO_LABELS", "[]", "ROWS.MODELS", "[]"], output_dir=str(tmp_path))
    planned = plan_stages(cfg)
    assert planned == ["data", "file_count"]
    runner = StageRunner(cfg.OUTPUT_DIR)
    runner.run("data", lambda: {"outputs": {"full": "f", "points": "p"}})  # stands in for the data stage
    for _ in range(2):
        assert run_stage(runner, cfg, "file_count", planned)["metrics"] == {"n": 2}
    assert calls == ["file_count"] and read_marker(os.path.join(cfg.OUTPUT_DIR, "file_count"))["stage"] == "file_count"
    with pytest.raises(KeyError, match="No stage of the table fills row 'no_such_row'"):
        stage_of_row("no_such_row")
