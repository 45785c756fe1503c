"""The results table of a pipeline run: ``results.json`` and ``results.md`` in its OUTPUT_DIR.

``results.json``::

    {"pseudo_labels": {"threshold" (the best threshold) | "threshold_mrn" | "fixed_best" | "adaptive" |
                       "adaptive_mrn" | "oracle_size" | "oracle_best":
                           quality report (wssis_d2.evaluation.quality.REPORT_KEYS, with its "microscopy"
                           dict) or null},
     "models": {"teacher" | "student_threshold" | "student_points" | "student_points_mrn" | "full_100":
                    segm mask AP on DATASETS.TEST (COCOEvaluator, percent) or null},
     "models_microscopy": {row: the microscopy metrics on DATASETS.TEST (evaluation/microscopy_evaluator.py:
                    "accuracy@0.5", "precision@0.5", "recall@0.5", "f1@0.5", "accuracy@0.75", "f1@0.75", "dsb",
                    "seg", "mean_matched_iou", "count_error", "count_error_rel", counts, "score_thr") or null},
     "models_val": the AP on DATASETS.VAL (the set settings are chosen on), or null without it,
     "models_val_microscopy": the microscopy metrics on DATASETS.VAL, or null without it,
     "student_vs_teacher": {"student", "student_ap", "teacher_ap", "on", "better", "better_weights"} when the
         student (points + MRN, else points) ends below its teacher on the validation set (the test set
         without one), else null,
     "fixed_levels": {level: report}, "fixed_best_level": int or null,
     "thresholds": {threshold: report}, "best_threshold": float or null (typed fields of the export jobs,
         ``metrics.jobs`` of the stage markers),
     "ratios": {model row: AP / AP of full_100, or null},
     "mrn_settings": {"crop_size", "heatmap_sigma", "dice_weight", "bce_weight", "teacher_checkpoints"} of
         the MaskRefineNet stage, or null (every table reporting MRN says them: the paper's are 256, 6, Dice),
     "no_predictions": [model rows whose model predicted nothing on the test set: AP 0],
     "labels": counts of OUTPUT_DIR/labels.json (DATA.KIND custom) and, with POINTS_GT, its quality; or null,
     "review": the review stage's summary (flags, orphans; with POINTS_GT the share of bad masks found in the
         top 10 / 20 / 50 % by risk and the missed-click test), or null (wssis_d2/review),
     "skipped_rows": {row: why} (DATA.KIND custom: rows that need data the run does not have),
     "scale_choice": DATA.KIND custom: the input scale and tiles chosen per node (pipeline/scale.py); else null,
     "few_labels": [lines: what the run lacked and what more labelling would likely help (pipeline/few_labels.py)],
     "meta": {...how it was measured...}, "timings": {stage: seconds}}

null where the profile's ROWS skip a row (or its stage has not run).
"""
import datetime
import os
import platform
from typing import Dict, Mapping, Optional

import torch
import yaml

from ..data.json_io import write_json_atomic
from ..evaluation.microscopy import format_value
from ..evaluation.quality import best_report, compare_reports
from ..utils.part_files import atomic_output
from .config import MODEL_ROWS, PSEUDO_ROWS
from .few_labels import click_round_line, few_label_summary
from .stage_table import stage_of_row

__all__ = ["best_fixed_level", "build_results", "format_results", "machine_info", "model_ratios", "set_names",
           "student_vs_teacher", "verdict_line", "write_results"]

MODEL_LABELS = {
    "teacher": "teacher (full labels only)",
    "student_threshold": "student: full + unlabeled (threshold pseudo-labels)",
    "student_points": "student: full + points (adaptive pseudo-labels)",
    "student_points_mrn": "student: full + points + MRN",
    "full_100": "100% full labels",
}


def machine_info() -> dict:
    """Where the numbers come from: OS, CPU, torch threads, GPU, library versions."""
    import detectron2

    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "detectron2": detectron2.__version__, "python": platform.python_version()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
    return info


def _elapsed_seconds(records) -> Optional[float]:
    """Seconds from the earliest ``started`` to the latest ``finished`` of stage markers (None if none)."""
    spans = [(datetime.datetime.fromisoformat(r["started"]), datetime.datetime.fromisoformat(r["finished"]))
             for r in records if r and r.get("started") and r.get("finished")]
    if not spans:
        return None
    return (max(f for _, f in spans) - min(s for s, _ in spans)).total_seconds()


def best_fixed_level(reports: Mapping[str, dict], jobs: Mapping[str, dict]) -> Optional[int]:
    """Level of the best fixed-level report (``quality.best_report``: highest AP, then mean IoU; None
    without reports); ``jobs``: the export jobs' typed fields by name (``metrics.jobs`` of the marker)."""
    name = best_report(reports)
    return None if name is None else int(jobs[name]["level"])


def _by_setting(reports: Mapping[str, dict], jobs: Mapping[str, dict], field: str, fmt) -> Dict[str, dict]:
    """{formatted job setting ``field``: report}, sorted by the setting."""
    named = sorted((jobs[name][field], r) for name, r in reports.items() if name in jobs)
    return {fmt(value): r for value, r in named}


def student_vs_teacher(results: Mapping, records: Mapping[str, dict], val_name: str, test_name: str) -> Optional[dict]:
    """When the student of the clicks (points + MRN, else points) ends below the teacher in mask AP on the
    validation set (the test set without one): who is better and its weights; else None."""
    on, models = (val_name, results.get("models_val")) if results.get("models_val") else (test_name,
                                                                                          results.get("models"))
    models = models or {}
    teacher = models.get("teacher")
    student = next((r for r in ("student_points_mrn", "student_points") if models.get(r) is not None), None)
    if teacher is None or student is None or models[student] >= teacher:
        return None
    weights = ((records.get(stage_of_row("teacher")) or {}).get("outputs") or {}).get("weights")
    return {"student": student, "student_ap": models[student], "teacher_ap": teacher, "on": on,
            "better": "teacher", "better_weights": weights}


def verdict_line(verdict: Optional[dict], labels_json: bool = False) -> Optional[str]:
    """The one line results.md and the log give ``student_vs_teacher`` (None when the student is not below);
    ``labels_json``: the run wrote labels.json (which the verdict does not change)."""
    if not verdict:
        return None
    student = MODEL_LABELS[verdict["student"]].split(": ", 1)[-1]
    return (f"The method did not help here: the student ({student}) ends below its teacher on `{verdict['on']}` "
            f"({verdict['student_ap']:.1f} vs {verdict['teacher_ap']:.1f} mask AP); the better model is the teacher, "
            f"weights `{verdict['better_weights']}`" + (" (labels.json is unaffected)." if labels_json else "."))


def model_ratios(models: Mapping[str, Optional[float]]) -> Dict[str, Optional[float]]:
    """{model row: its AP / the AP of full_100} (None where either is missing or the 100% AP is 0)."""
    full = models.get("full_100")
    return {r: (models[r] / full if models.get(r) is not None and full else None) for r in MODEL_ROWS}


def mrn_settings(pcfg, record: Optional[dict]) -> Optional[dict]:
    """Crop size, heatmap sigma, loss weights (from the MRN stage's saved config) and the teacher
    checkpoints of its training data; None when the stage has not run."""
    path = ((record or {}).get("outputs") or {}).get("config")
    if not path or not os.path.isfile(path):
        return None
    with open(path) as f:
        mrn = ((yaml.safe_load(f) or {}).get("MODEL") or {}).get("MRN") or {}
    return {"crop_size": mrn.get("CROP_SIZE"), "heatmap_sigma": mrn.get("HEATMAP_SIGMA"),
            "dice_weight": mrn.get("DICE_WEIGHT"), "bce_weight": mrn.get("BCE_WEIGHT"),
            "teacher_checkpoints": list(pcfg.MRN.TEACHER_CHECKPOINTS)}


def _segm_ap(metrics: Optional[dict]) -> Optional[float]:
    """segm AP of one evaluation's results (0.0 when the model predicted nothing: COCOEvaluator's NaN)."""
    segm = (metrics or {}).get("segm")
    if segm is None:
        return None
    return 0.0 if segm.get("AP") is None else segm["AP"]


def _reports(record: Optional[dict]) -> Dict[str, dict]:
    return ((record or {}).get("metrics") or {}).get("reports") or {}


def _jobs(record: Optional[dict]) -> Dict[str, dict]:
    return ((record or {}).get("metrics") or {}).get("jobs") or {}


def build_results(pcfg, records: Mapping[str, dict], meta: Optional[dict] = None) -> dict:
    """results.json content from the stage markers (see the module docstring)."""
    pseudo = {k: None for k in PSEUDO_ROWS}
    models = {k: None for k in MODEL_ROWS}
    for row in pcfg.ROWS.PSEUDO_LABELS:  # the stage's report of the row (fixed_best: below)
        pseudo[row] = _reports(records.get(stage_of_row(row))).get(row)
    fixed, fixed_jobs = _reports(records.get("pseudo_fixed")), _jobs(records.get("pseudo_fixed"))
    level = best_fixed_level(fixed, fixed_jobs) if "fixed_best" in pcfg.ROWS.PSEUDO_LABELS and fixed else None
    if level is not None:
        pseudo["fixed_best"] = next(r for name, r in fixed.items() if fixed_jobs[name]["level"] == level)
    no_predictions = []
    models_micro = {k: None for k in MODEL_ROWS}
    models_val = {k: None for k in MODEL_ROWS} if pcfg.DATASETS.VAL else None
    models_val_micro = {k: None for k in MODEL_ROWS} if pcfg.DATASETS.VAL else None
    for row in pcfg.ROWS.MODELS:
        metrics = (records.get(stage_of_row(row)) or {}).get("metrics") or {}
        if pcfg.DATASETS.VAL and pcfg.DATASETS.TEST:  # two test sets: detectron2 keys the results by name
            models_val[row] = _segm_ap(metrics.get(pcfg.DATASETS.VAL))
            models_val_micro[row] = (metrics.get(pcfg.DATASETS.VAL) or {}).get("microscopy")
            metrics = metrics.get(pcfg.DATASETS.TEST) or {}
        if metrics.get("segm") is None:
            continue
        models[row] = _segm_ap(metrics)
        models_micro[row] = metrics.get("microscopy")
        if metrics["segm"].get("AP") is None:  # COCOEvaluator gives NaN when the model predicts nothing: AP 0
            no_predictions.append(row)
    thresh_jobs = _jobs(records.get("pseudo_threshold"))
    thresholds = {k: r for k, r in _reports(records.get("pseudo_threshold")).items() if k in thresh_jobs}
    timings = {name: rec.get("seconds") for name, rec in records.items()}
    results = {
        "pseudo_labels": pseudo,
        "models": models,
        "models_microscopy": models_micro,
        "models_val": models_val,
        "models_val_microscopy": models_val_micro,
        "fixed_levels": _by_setting(fixed, fixed_jobs, "level", str),
        "fixed_best_level": level,
        "thresholds": _by_setting(thresholds, thresh_jobs, "threshold", lambda t: f"{t:g}"),
        "best_threshold": ((records.get("pseudo_threshold") or {}).get("metrics") or {}).get("best_threshold"),
        "ratios": model_ratios(models),
        "mrn_settings": mrn_settings(pcfg, records.get("mrn")),
        "no_predictions": no_predictions,
        "labels": (records.get("labels") or {}).get("metrics"),
        "review": ((records.get("review") or {}).get("metrics") or {}).get("review"),
        "skipped_rows": dict((meta or {}).get("skipped_rows") or {}),
        "scale_choice": ((records.get("data") or {}).get("metrics") or {}).get("scale_choice"),
        "few_labels": few_label_summary(pcfg, records),
        "meta": dict(meta or {}),
        "timings": timings,
    }
    test_set, val_set = set_names(pcfg)
    results["student_vs_teacher"] = student_vs_teacher(results, records, val_set, test_set)
    return results


def _fmt(v, digits=1):
    return "-" if v is None else f"{v:.{digits}f}"


def _iterations(rec):
    if not rec or "max_iter" not in rec:
        return "-"
    resumed = f" (resumed at {rec['start_iter']})" if rec.get("start_iter") else ""
    return f"{rec['max_iter']} x {rec.get('ims_per_batch', '?')} images{resumed}"


def _scale_line(choice: Optional[dict]) -> str:
    """results.md: the input scale of each node (DATA.KIND custom)."""
    if not choice or not choice.get("enabled"):
        return "- Input scale: the model configs' own (DATA.CUSTOM.AUTO_SCALE off)."
    parts = []
    for node, c in (choice.get("nodes") or {}).items():
        if c["mode"] == "tiles":
            what = f"tiles of {c['tile_size']} px (overlap {c['tile_overlap']}) scaled by {c['scale']:.3g}"
        elif c["mode"] == "whole":
            what = f"whole images, MIN_SIZE_TEST {c['input_side']}"
        else:
            what = "nothing chosen"
        parts.append(f"{node} {what}" + ("" if c["applied"] else " (not applied)"))
    line = f"- Input scale chosen from FULL_JSON (DATA.CUSTOM.AUTO_SCALE): {'; '.join(parts)}."
    caps = {node: c["detection_opts"][1] for node, c in (choice.get("nodes") or {}).items() if c.get("detection_opts")}
    if caps:
        densest = max(c.get("densest_image", 0) for c in choice["nodes"].values())
        line += (f" Detections per image raised for the densest image ({densest} objects): "
                 + ", ".join(f"{node} MAX_PER_IMG {cap}" for node, cap in caps.items()) + ".")
    return line


def set_names(pcfg):
    """(test set, validation set) as results.md calls them: the registered names, or the user's files (custom
    data); "" where there is none."""
    d = pcfg.DATASETS
    custom = pcfg.DATA.CUSTOM if pcfg.DATA.KIND == "custom" else None
    test_set = (custom.TEST_JSON or custom.VAL_JSON) if custom else d.TEST
    return test_set, (custom.VAL_JSON if custom and d.VAL else d.VAL)


# (column, microscopy key, digits) of the model table
_MODEL_MICRO = (("acc@0.5", "accuracy@0.5", 3), ("f1@0.5", "f1@0.5", 3), ("dsb", "dsb", 3), ("seg", "seg", 3),
                ("count err", "count_error", 1))


def format_results(pcfg, results: dict, records: Mapping[str, dict]) -> str:
    """results.md: the two tables and how they were measured."""
    meta = results.get("meta") or {}
    data = ((records.get("data") or {}).get("metrics")) or {}
    d = pcfg.DATASETS
    test_set, val_set = set_names(pcfg)

    def count(key):
        c = data.get(key) or {}
        return f"{c['images']} images, {c['instances']} instances" if "images" in c else "size not counted"

    lines = [f"# PointWSSIS pipeline results: {meta.get('config_file') or '(no config file)'}", ""]
    if pcfg.DATA.KIND == "custom":
        c = pcfg.DATA.CUSTOM
        lines += [f"- Data (custom): `{c.FULL_JSON}` ({count('full')}) fully labeled, `{c.POINTS_JSON}` "
                  f"({count('points')}) clicked, images under `{c.IMAGE_ROOT}`.",
                  f"- Models are evaluated on `{c.TEST_JSON or c.VAL_JSON}` ({count('test')}) with detectron2's "
                  "COCOEvaluator (segm mask AP, ordinary inference, no points)." if c.VAL_JSON or c.TEST_JSON else
                  "- Models are not evaluated (no DATA.CUSTOM.VAL_JSON)."]
        if c.TRAIN_ALL_JSON:
            lines.append(f"- The 100% model trains on `{c.TRAIN_ALL_JSON}` ({count('train_all')}).")
        lines.append(_scale_line(results.get("scale_choice")))
    else:
        lines += [
            f"- Data: `{d.FULL}` ({count('full')}) fully labeled, `{d.POINTS}` ({count('points')}) point-labeled, "
            f"{pcfg.DATA.PERCENT}% split (seed {pcfg.DATA.SPLIT_SEED}), root `{pcfg.DATA.ROOT}`.",
            f"- Models are evaluated on `{d.TEST}` ({count('test')}) with detectron2's COCOEvaluator (segm mask AP, "
            "ordinary inference, no points). The 100% model trains on "
            f"`{d.TRAIN_ALL}` ({count('train_all')}).",
        ]
    if click_round_line(pcfg, records):
        lines.append(click_round_line(pcfg, records))
    if d.VAL:
        lines.append(f"- Settings are chosen on `{val_set}` ({count('val')}), the validation set: its AP is the "
                     "\"val\" column; the mask AP rows are the separate test set's.")
    lines.append(
        f"- Pseudo-label quality: the pseudo-labels of `{d.POINTS}` against `{d.POINTS_GT}`, every score 1 "
        "(`tools/pseudo_label_report.py`): mask AP, mean IoU per point (no mask = 0), coverage, levels."
        if d.POINTS_GT else "- Pseudo-label quality: not measured (no true masks of the point images).")
    m = meta.get("machine") or {}
    lines.append(f"- Machine: {m.get('processor', '?')}, {m.get('cpu_count', '?')} CPUs"
                 + (f", GPU {m['gpu']} x {meta.get('num_gpus', 1)}" if m.get("gpu") else ", no GPU")
                 + f"; torch {m.get('torch', '?')}, detectron2 {m.get('detectron2', '?')}; "
                 f"load average {meta.get('load_start', '?')} at the start, {meta.get('load_end', '?')} at the end.")
    ran = meta.get("stages_run") or []
    span = _elapsed_seconds(records.values())
    lines.append(f"- Wall time: {_fmt(span, 0)} s from the first stage's start to the last one's end "
                 f"({_fmt(sum(v for v in results['timings'].values() if v), 0)} s summed over the stages; "
                 f"{meta.get('parallel_stages', 1)} stage(s) at once); this invocation "
                 f"{_fmt(meta.get('wall_seconds'), 0)} s, ran {', '.join(ran) if ran else 'no stage'}"
                 + (" (the others finished earlier)." if set(ran) != set(records) else "."))
    for row, why in (results.get("skipped_rows") or {}).items():
        lines.append(f"- Row `{row}` skipped: {why}.")
    lab = results.get("labels")
    if lab:
        rep = lab.get("report") or {}
        lines.append(f"- labels.json: {lab['num_images']} images, {lab['num_full_annotations']} true masks, "
                     f"{lab['num_clicks']} clicks = {lab['num_pseudo_labels']} pseudo-labels + {lab['num_fallback']} "
                     "flagged fallbacks" + (f"; on the clicked images vs their true masks: AP {_fmt(rep.get('AP'), 2)}, "
                                            f"mean IoU {_fmt(rep.get('mean_iou'), 3)}" if rep else "") + ".")
    verdict = verdict_line(results.get("student_vs_teacher"), labels_json=bool(results.get("labels")))
    if verdict:
        lines.append(f"- **{verdict}**")
    micro = results.get("models_microscopy") or {}
    thr = next((m["score_thr"] for m in micro.values() if m and "score_thr" in m), None)
    rev = results.get("review")
    if rev:
        found, missed = rev.get("found") or {}, rev.get("missed_clicks") or {}
        lines.append(f"- Review (review/review.md): {rev['num_flagged']} of {rev['num_clicks']} clicks flagged, "
                     f"{rev['num_orphans']} orphans" + (
                         f"; bad masks (IoU < 0.5) {_fmt(rev.get('base_rate'), 3)} of all, share found in the top 20 % "
                         f"by risk {_fmt(found.get('20%'), 3)}" if found else "") + (
                         f"; {missed['recovered']} of {missed['removed']} removed clicks back as orphans"
                         if missed else "") + ".")
    if results.get("few_labels"):
        lines += ["", "## What was missing", ""] + [f"- {line}." for line in results["few_labels"]]
    lines += ["", f"## Models (segm mask AP on `{test_set or 'no test set'}`)", "",
              "| model | iterations | mask AP | / 100% model | val | "
              + " | ".join(c for c, _, _ in _MODEL_MICRO) + " |",
              "|---|---|---|---|---|" + "---|" * len(_MODEL_MICRO)]
    for row in MODEL_ROWS:
        rec = records.get(stage_of_row(row))
        note = " (no predictions)" if row in results.get("no_predictions", []) else ""
        val = _fmt((results.get("models_val") or {}).get(row))
        m = micro.get(row) or {}
        lines.append(f"| {MODEL_LABELS[row]} | {_iterations(rec)} | {_fmt(results['models'][row])}{note} | "
                     f"{_fmt(results['ratios'][row], 2)} | {val} | "
                     + " | ".join(format_value(m.get(k), digits) for _, k, digits in _MODEL_MICRO) + " |")
    lines += ["", "mask AP: COCO segm AP over up to max(100, MODEL.SOLOV2.MAX_PER_IMG) detections per image (COCO's "
              "100 raised for dense images). Microscopy columns (docs/RESULTS.md): detections with score >= "
              + (f"{thr:g}" if thr is not None else "TEST.WSSIS_COUNT_SCORE_THR")
              + " (a fixed rule, not tuned), painted by score into label images; acc = TP / (TP + FP + FN) and "
              "f1 at IoU >= 0.5 pooled over the images, dsb = DSB 2018 score (IoU > 0.5:0.95, per image), seg = "
              "CTC SEG, count err = mean |predicted - true| objects per image."]
    lines += ["", f"## Pseudo-labels of the point images (`{d.POINTS}`)", ""]
    named = {}
    for row in PSEUDO_ROWS:
        r = results["pseudo_labels"][row]
        if r is None:
            continue
        label = row
        if row == "threshold":
            label = (f"threshold {_fmt(results.get('best_threshold'), 2)} (best AP vs the clicked images' true "
                     "masks; no points)")
        elif row == "threshold_mrn":
            label = "threshold + MRN (no clicks: each mask's centre of mass as its point)"
        elif row == "fixed_best":
            label = f"fixed level {results['fixed_best_level']} (best)"
        elif row == "adaptive_mrn":
            label = "adaptive + MRN"
        elif row == "oracle_best":
            label = "oracle_best (per click the best fixed-level mask; not a bound)"
        named[label] = r
    lines.append(compare_reports(named, print_table=False) if named else "(no pseudo-label row in this profile)")
    if named:
        lines += ["", "Pseudo-labels: AP with every score 1 over up to max(100, most pseudo-labels of an image) per "
                  "image; mean_iou per click (no mask = 0); microscopy columns against every true mask of the "
                  "clicked images, every pseudo-label counted."]
    m = results.get("mrn_settings")
    if m:
        loss = "Dice" + (f" + {m['bce_weight']:g} x BCE" if m.get("bce_weight") else "")
        lines += ["", f"MaskRefineNet: {m['crop_size']}-px crops, heatmap sigma {m['heatmap_sigma']:g}, loss {loss}, "
                      f"trained on the teacher's predictions at {m['teacher_checkpoints']} of its schedule "
                      f"(the paper: 256 px, sigma 6, Dice)."]
    if results.get("thresholds"):
        lines += ["", "Every threshold of the SSIS baseline (AP_scored: ranked by the teacher's scores):", "",
                  compare_reports({f"threshold {k}": r for k, r in results["thresholds"].items()}, print_table=False)]
    if results["fixed_levels"]:
        lines += ["", "Every fixed level:", "",
                  compare_reports({f"fixed {k}": r for k, r in results["fixed_levels"].items()}, print_table=False)]
    lines += ["", "## Wall time per stage", "",
              "| stage | seconds | iterations | load average (1 min) start / end | finished |", "|---|---|---|---|---|"]
    for name, seconds in results["timings"].items():
        rec = records.get(name) or {}
        load = " / ".join(_fmt((rec.get(k) or [None])[0], 2) for k in ("load_start", "load_end"))
        lines.append(f"| {name} | {_fmt(seconds, 1)} | {_iterations(rec)} | {load} | {rec.get('finished', '-')} |")
    return "\n".join(lines) + "\n"


def write_results(pcfg, records: Mapping[str, dict], meta: dict) -> Dict[str, str]:
    """Write ``results.json`` and ``results.md`` (atomically) into OUTPUT_DIR; returns their paths, the
    markdown and the results.json content ("content")."""
    results = build_results(pcfg, records, meta)
    json_path = write_json_atomic(results, os.path.join(pcfg.OUTPUT_DIR, "results.json"))
    md = format_results(pcfg, results, records)
    md_path = os.path.join(pcfg.OUTPUT_DIR, "results.md")
    with atomic_output(md_path) as f:
        f.write(md)
    return {"json": json_path, "md": md_path, "markdown": md, "content": results}
