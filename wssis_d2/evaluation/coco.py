"""COCOEvaluator construction with feature detection of detectron2's compiled fast COCOeval."""
import logging
from collections import Counter
from typing import Dict

from detectron2.evaluation import COCOEvaluator

from .ids import one_based_annotation_ids, usable_gt_masks

logger = logging.getLogger(__name__)


def has_fast_coco_eval() -> bool:
    """Whether detectron2's compiled ops include the fast COCOeval (absent from placeholder builds)."""
    try:
        from detectron2 import _C
    except ImportError:
        return False
    return hasattr(_C, "COCOevalEvaluateImages") and hasattr(_C, "COCOevalAccumulate")


def build_coco_evaluator(cfg, dataset_name: str, output_folder: str) -> COCOEvaluator:
    """Segm (and bbox) ``COCOEvaluator``, using the fast implementation only when it is compiled.

    COCO scores at most 100 detections per image; where the model keeps more (``MODEL.SOLOV2.MAX_PER_IMG``
    > 100, for images with many objects) the evaluator scores as many as the model keeps, so it never cuts
    what the model found. An image with more true instances than the model may keep is logged (its AP is
    capped: raise ``MODEL.SOLOV2.MAX_PER_IMG``).
    """
    solov2 = cfg.MODEL.get("SOLOV2")
    model_cap = int(solov2.MAX_PER_IMG) if solov2 is not None else 100
    evaluator = COCOEvaluator(
        dataset_name,
        tasks=("segm", "bbox"),
        distributed=True,
        output_dir=output_folder,
        use_fast_impl=has_fast_coco_eval(),
        max_dets_per_image=max(100, model_cap),
    )
    usable_gt_masks(evaluator._coco_api, dataset_name)  # degenerate polygons would crash pycocotools
    one_based_annotation_ids(evaluator._coco_api, dataset_name)  # GT id 0 would lose its match (ids.py)
    dense = dense_images(evaluator._coco_api, model_cap)
    if dense:
        densest = max(dense.values())
        logger.warning(f"{dataset_name}: {len(dense)} images have more true instances than the model keeps per "
                       f"image (MODEL.SOLOV2.MAX_PER_IMG {model_cap}; the densest {densest}): their recall, "
                       f"hence AP, is capped. Raise MODEL.SOLOV2.MAX_PER_IMG above {densest}.")
    return evaluator


def dense_images(coco_api, cap: int) -> Dict[int, int]:
    """{image id: non-crowd annotation count} of the images of ``coco_api`` with more than ``cap`` of them."""
    counts = Counter(a["image_id"] for a in coco_api.dataset.get("annotations", []) if not a.get("iscrowd", 0))
    return {i: n for i, n in counts.items() if n > cap}
