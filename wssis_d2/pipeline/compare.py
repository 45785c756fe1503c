"""Pipeline runs side by side (``make benchmark``: the ImageNet-pretrained run and its no-pretraining
ablation on the same data) and the figures the method is judged by.

- :func:`headline_figures`: from one ``results.json`` content, the ratios and differences of the paper's
  claims (teacher and student against the 100% model, the student's gain, the pseudo-label rows' gaps);
  ``None`` where a row is missing.
- :func:`format_comparison`: markdown, one column per run: model rows (mask AP, then accuracy@0.5 / count
  error), pseudo-label rows (AP / mean IoU / accuracy@0.5) and the headline figures, with the paper's value
  where it publishes one.
"""
from typing import Dict, Mapping, Optional, Sequence, Tuple

from ..evaluation.microscopy import format_value
from ..evaluation.quality import BEST_OVERLAP_NOTE
from .config import MODEL_ROWS, PSEUDO_ROWS
from .demo_figures import PAPER_5P
from .results import MODEL_LABELS, _fmt

__all__ = ["HEADLINES", "headline_figures", "format_comparison"]

_P = PAPER_5P
# (key, label, paper value at 5% on COCO or None): ratios in percent, differences in AP points.
HEADLINES = (
    ("teacher_vs_full", "teacher / 100% model (%)", 100.0 * _P["teacher"] / _P["full_100"]),
    ("student_vs_full", "student (points + MRN) / 100% model (%)", 100.0 * _P["student_points_mrn"] / _P["full_100"]),
    ("student_gain", "student (points + MRN) - teacher (AP)", _P["student_points_mrn"] - _P["teacher"]),
    ("adaptive_vs_threshold", "pseudo-labels: adaptive - threshold (AP)", None),
    ("adaptive_vs_fixed", "pseudo-labels: adaptive - best fixed level (AP)", None),
    ("oracle_gap", "pseudo-labels: oracle_size - adaptive (AP)", None),
    ("oracle_best_gap", "pseudo-labels: best fixed level per click - adaptive (AP)", None),
    ("mrn_gain_without_clicks", "pseudo-labels: threshold + MRN - threshold (AP)", None),
    ("mrn_gain", "pseudo-labels: adaptive + MRN - adaptive (AP)", None),
)

PSEUDO_LABELS = {"threshold": "threshold (no points)", "fixed_best": "best fixed level", "adaptive": "adaptive",
                 "adaptive_mrn": "adaptive + MRN", "oracle_size": "size-oracle level",
                 "oracle_best": "best fixed level per click (not a bound)",
                 "threshold_mrn": "threshold + MRN (no clicks)"}


def _ratio(a, b):
    return None if a is None or not b else 100.0 * a / b


def _diff(a, b):
    return None if a is None or b is None else a - b


def headline_figures(results: Mapping) -> Dict[str, Optional[float]]:
    """The :data:`HEADLINES` values of one run (``results.json`` content)."""
    m = results.get("models") or {}
    ap = {row: (r or {}).get("AP") for row, r in (results.get("pseudo_labels") or {}).items()}
    return {
        "teacher_vs_full": _ratio(m.get("teacher"), m.get("full_100")),
        "student_vs_full": _ratio(m.get("student_points_mrn"), m.get("full_100")),
        "student_gain": _diff(m.get("student_points_mrn"), m.get("teacher")),
        "adaptive_vs_threshold": _diff(ap.get("adaptive"), ap.get("threshold")),
        "adaptive_vs_fixed": _diff(ap.get("adaptive"), ap.get("fixed_best")),
        "oracle_gap": _diff(ap.get("oracle_size"), ap.get("adaptive")),
        "oracle_best_gap": _diff(ap.get("oracle_best"), ap.get("adaptive")),
        "mrn_gain": _diff(ap.get("adaptive_mrn"), ap.get("adaptive")),
        "mrn_gain_without_clicks": _diff(ap.get("threshold_mrn"), ap.get("threshold")),
    }


def _micro_cell(metrics: Optional[Mapping], *keys) -> str:
    """"a / b" of microscopy ``keys`` ((key, digits), ...), "-" without metrics."""
    if not metrics:
        return "-"
    return " / ".join(format_value(metrics.get(k), digits) for k, digits in keys)


def format_comparison(runs: Sequence[Tuple[str, Mapping]]) -> str:
    """Markdown tables of ``runs`` = [(column name, results.json content)], rows present in any run."""
    names = [name for name, _ in runs]
    head = "| | " + " | ".join(names) + " |"
    rule = "|---|" + "---|" * len(names)
    lines = ["## Models (segm mask AP)", "", head[:-1] + "| paper (COCO 5%, R-101) |", rule + "---|"]
    for row in MODEL_ROWS:
        values = [(r.get("models") or {}).get(row) for _, r in runs]
        if any(v is not None for v in values):
            lines.append(f"| {MODEL_LABELS[row]} | " + " | ".join(_fmt(v) for v in values) + f" | {_P[row]:.1f} |")
    micro = [(r.get("models_microscopy") or {}) for _, r in runs]
    if any(m.get(row) for m in micro for row in MODEL_ROWS):
        lines += ["", "## Models (microscopy: accuracy@0.5 / count error per image; score >= "
                  f"{next(m[row]['score_thr'] for m in micro for row in MODEL_ROWS if m.get(row)):g})", "", head, rule]
        for row in MODEL_ROWS:
            cells = [_micro_cell(m.get(row), ("accuracy@0.5", 3), ("count_error", 1)) for m in micro]
            if any(c != "-" for c in cells):
                lines.append(f"| {MODEL_LABELS[row]} | " + " | ".join(cells) + " |")
    lines += ["", "## Pseudo-labels of the point images (mask AP / mean IoU / accuracy@0.5)", "", head, rule]
    levels = sorted({r.get("fixed_best_level") for _, r in runs if r.get("fixed_best_level") is not None})
    for row in PSEUDO_ROWS:
        reports = [(r.get("pseudo_labels") or {}).get(row) for _, r in runs]
        if any(rep is not None for rep in reports):
            cells = ["-" if rep is None else f"{_fmt(rep.get('AP'), 2)} / {_fmt(rep.get('mean_iou'), 3)}"
                     + ("*" if rep.get("mean_iou_rule") == "best_overlap" else "")
                     + f" / {format_value((rep.get('microscopy') or {}).get('accuracy@0.5'))}" for rep in reports]
            label = PSEUDO_LABELS[row]
            if row == "fixed_best" and levels:
                label += f" (level {', '.join(str(l) for l in levels)})"
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if any(((r.get("pseudo_labels") or {}).get(row) or {}).get("mean_iou_rule") == "best_overlap"
           for _, r in runs for row in PSEUDO_ROWS):
        lines += ["", BEST_OVERLAP_NOTE]
    figures = [headline_figures(r) for _, r in runs]
    lines += ["", "## Headline figures", "", head[:-1] + "| paper |", rule + "---|"]
    for key, label, paper in HEADLINES:
        lines.append(f"| {label} | " + " | ".join(_fmt(f[key]) for f in figures) + f" | {_fmt(paper)} |")
    return "\n".join(lines) + "\n"
