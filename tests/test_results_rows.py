"""results.json / results.md from stage markers written by hand (no training): rows keep their level and
threshold as typed fields of the export jobs (job names are never parsed), the microscopy metrics of every
model row, and the one line that says when the student ends below its teacher."""
import os

from wssis_d2.pipeline import load_pipeline_cfg
from wssis_d2.pipeline.results import build_results, format_results, verdict_line

from conftest import REPO

TINY = os.path.join(REPO, "configs", "pipeline", "shapes_tiny.yaml")


def _report(ap, mean_iou=0.5, acc=0.4):
    return {"AP": ap, "AP50": ap, "AP75": ap, "APs": None, "APm": None, "APl": None, "AP_scored": ap,
            "mean_iou": mean_iou, "mean_iou_rule": "click", "coverage": 1.0, "levels": {},
            "microscopy": {"accuracy@0.5": acc, "f1@0.5": acc, "dsb": acc, "seg": acc, "count_error": 1.0}}


def _model(val_ap, test_ap, pcfg):
    micro = {"accuracy@0.5": test_ap / 100, "f1@0.5": 0.5, "dsb": 0.3, "seg": 0.6, "count_error": 2.0,
             "score_thr": 0.5}
    return {"metrics": {pcfg.DATASETS.VAL: {"segm": {"AP": val_ap}, "microscopy": dict(micro, count_error=9.0)},
                        pcfg.DATASETS.TEST: {"segm": {"AP": test_ap}, "microscopy": micro}},
            "outputs": {"weights": f"/run/{val_ap}/model_final.pth"}, "max_iter": 10, "ims_per_batch": 2}


def _records(pcfg, student_val_ap):
    # job names that carry no level / threshold: the typed fields are all there is to read
    fixed_jobs = {"coarse": {"mode": "fixed", "level": 3, "threshold": None},
                  "fine": {"mode": "fixed", "level": 0, "threshold": None}}
    thr_jobs = {"low": {"mode": "threshold", "level": None, "threshold": 0.25},
                "high": {"mode": "threshold", "level": None, "threshold": 0.5}}
    return {
        "teacher": _model(40.0, 39.1, pcfg),
        "student_points_mrn": _model(student_val_ap, 13.6, pcfg),
        "full_100": _model(45.0, 44.0, pcfg),
        "pseudo_fixed": {"metrics": {"jobs": fixed_jobs, "reports": {"coarse": _report(20.0), "fine": _report(30.0)}}},
        "pseudo_threshold": {"metrics": {"jobs": thr_jobs, "best_threshold": 0.25,
                                         "reports": {"low": _report(11.0), "high": _report(9.0),
                                                     "threshold": _report(11.0)}}},
        "pseudo_threshold_mrn": {"metrics": {"reports": {"threshold_mrn": _report(25.0, 0.8, 0.7)}}},
    }


def test_typed_fields_microscopy_and_student_below_teacher(tmp_path):
    pcfg = load_pipeline_cfg(TINY, output_dir=str(tmp_path))
    records = _records(pcfg, student_val_ap=13.0)
    results = build_results(pcfg, records)
    assert results["fixed_best_level"] == 0 and list(results["fixed_levels"]) == ["0", "3"]
    assert results["pseudo_labels"]["fixed_best"]["AP"] == 30.0
    assert list(results["thresholds"]) == ["0.25", "0.5"] and results["thresholds"]["0.5"]["AP"] == 9.0
    assert results["pseudo_labels"]["threshold_mrn"]["mean_iou"] == 0.8
    assert results["models_microscopy"]["teacher"]["accuracy@0.5"] == 0.391
    assert results["models_val_microscopy"]["teacher"]["count_error"] == 9.0
    verdict = results["student_vs_teacher"]
    assert verdict == {"student": "student_points_mrn", "student_ap": 13.0, "teacher_ap": 40.0,
                       "on": pcfg.DATASETS.VAL, "better": "teacher", "better_weights": "/run/40.0/model_final.pth"}
    md = format_results(pcfg, results, records)
    line = verdict_line(verdict)
    assert line in md and "13.0 vs 40.0" in line and "/run/40.0/model_final.pth" in line
    assert "student (full + points + MRN) ends below" in line and "labels.json" not in line  # none in this run
    assert verdict_line(verdict, labels_json=True).endswith("(labels.json is unaffected).")
    teacher_row = next(r for r in md.splitlines() if r.startswith("| teacher (full labels only)"))
    assert teacher_row.endswith("| 39.1 | 0.89 | 40.0 | 0.391 | 0.500 | 0.300 | 0.600 | 2.0 |")
    assert "threshold + MRN (no clicks" in md and "| 25.00 |" in md
    assert "threshold 0.25 (best AP vs the clicked images' true masks; no points)" in md


def test_no_verdict_when_the_student_is_not_below(tmp_path):
    pcfg = load_pipeline_cfg(TINY, output_dir=str(tmp_path))
    records = _records(pcfg, student_val_ap=41.0)  # below on the test set (13.6), above on val: val decides
    results = build_results(pcfg, records)
    assert results["student_vs_teacher"] is None and verdict_line(None) is None
    assert "did not help" not in format_results(pcfg, results, records)
