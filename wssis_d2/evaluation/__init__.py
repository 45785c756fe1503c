"""Evaluation helpers: COCO evaluation that works with full and placeholder detectron2 builds."""
from .coco import build_coco_evaluator, has_fast_coco_eval

__all__ = ["build_coco_evaluator", "has_fast_coco_eval"]
