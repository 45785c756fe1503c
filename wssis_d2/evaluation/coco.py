"""COCOEvaluator construction with feature detection of detectron2's compiled fast COCOeval."""
from detectron2.evaluation import COCOEvaluator

from .ids import one_based_annotation_ids, usable_gt_masks


def has_fast_coco_eval() -> bool:
    """Whether detectron2's compiled ops include the fast COCOeval (absent from placeholder builds)."""
    try:
        from detectron2 import _C
    except ImportError:
        return False
    return hasattr(_C, "COCOevalEvaluateImages") and hasattr(_C, "COCOevalAccumulate")


def build_coco_evaluator(cfg, dataset_name: str, output_folder: str) -> COCOEvaluator:
    """Segm (and bbox) ``COCOEvaluator``, using the fast implementation only when it is compiled."""
    evaluator = COCOEvaluator(
        dataset_name,
        tasks=("segm", "bbox"),
        distributed=True,
        output_dir=output_folder,
        use_fast_impl=has_fast_coco_eval(),
    )
    usable_gt_masks(evaluator._coco_api, dataset_name)  # degenerate polygons would crash pycocotools
    one_based_annotation_ids(evaluator._coco_api, dataset_name)  # GT id 0 would lose its match (ids.py)
    return evaluator
