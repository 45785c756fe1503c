"""Annotation ids handed to pycocotools' COCOeval are never 0.

COCOeval records matches by id (``gtm`` / ``dtm`` hold the matched annotation's id, 0 meaning
"unmatched"), so a ground-truth annotation with id 0 never counts as matched: a perfect prediction of it
is a false positive. COCO files from other tools often number annotations from 0. Every COCO object
built here for evaluation (detectron2's ``COCOEvaluator`` via :func:`~wssis_d2.evaluation.coco.build_coco_evaluator`,
the pseudo-label report of :mod:`wssis_d2.evaluation.quality`) goes through
:func:`one_based_annotation_ids`. Predictions reference images and categories, never GT annotation ids,
so the renumbering changes no result. Image ids 0 are harmless (only dict keys in COCOeval).
"""
import contextlib
import io
import logging

from ..data.coco_masks import clean_segmentations, log_cleaned

__all__ = ["one_based_annotation_ids", "usable_gt_masks"]

logger = logging.getLogger(__name__)


def one_based_annotation_ids(coco_api, name="<gt>"):
    """Renumber the annotations of ``coco_api`` (a pycocotools ``COCO``) 1..N in file order when any id is
    <= 0, and rebuild its index; otherwise leave it as is. The annotation dicts are copied, so the dict the
    ``COCO`` was built from keeps its ids. Returns ``coco_api``."""
    anns = coco_api.dataset.get("annotations") or []
    if anns and min(a["id"] for a in anns) <= 0:
        coco_api.dataset = {**coco_api.dataset, "annotations": [{**a, "id": k} for k, a in enumerate(anns, 1)]}
        with contextlib.redirect_stdout(io.StringIO()):
            coco_api.createIndex()
        logger.info(f"{name}: annotation ids renumbered 1..{len(anns)} for COCOeval (an id 0 loses its match)")
    return coco_api


def usable_gt_masks(coco_api, name="<gt>"):
    """Drop what pycocotools cannot rasterise from the GT of ``coco_api`` (polygons of fewer than 3 points:
    ``annToRLE`` crashes on them) and the annotations left with an empty mask (a GT nothing can match),
    with a count in the log (:func:`~wssis_d2.data.coco_masks.clean_segmentations`, the rule of the split
    tool and the loaders); crowd regions stay, as COCOeval's ignore regions. Rebuilds the index when
    something was dropped. Returns ``coco_api``."""
    anns = coco_api.dataset.get("annotations") or []
    kept, counts = clean_segmentations(anns)
    if counts:
        coco_api.dataset = {**coco_api.dataset, "annotations": kept}
        with contextlib.redirect_stdout(io.StringIO()):
            coco_api.createIndex()
        log_cleaned(counts, f"{name} (evaluation GT)")
    return coco_api
