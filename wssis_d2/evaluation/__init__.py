"""Evaluation helpers: COCO evaluation that works with full and placeholder detectron2 builds, the
pseudo-label exporter and the pseudo-label quality report."""
from .coco import build_coco_evaluator, has_fast_coco_eval
from .pseudo_labels import PseudoLabelExporter, build_pseudo_label_exporter, instances_to_pseudo_annotations
from .quality import REPORT_KEYS, compare_reports, format_report, pseudo_label_quality

__all__ = [
    "build_coco_evaluator",
    "has_fast_coco_eval",
    "PseudoLabelExporter",
    "build_pseudo_label_exporter",
    "instances_to_pseudo_annotations",
    "REPORT_KEYS",
    "compare_reports",
    "format_report",
    "pseudo_label_quality",
]
