"""Export point-guided pseudo-labels as a COCO instances json (a detectron2 ``DatasetEvaluator``).

The file is what the MaskRefineNet stage and the student training read; its schema is fixed
(docs/PSEUDO_LABELS.md)::

    {"info": {"tool", "mode", "config_file", "weights", "dataset", "image_root", "source_json",
              "num_images", "num_images_processed", "num_points", "num_invalid_points",
              "num_points_without_mask", "num_collisions", "num_cross_class_collisions",
              "num_points_capped", "num_annotations",
              "num_images_without_pseudo_labels",
              "settings", "point_convention"},
     "images": [{"id", "file_name", "height", "width"}, ...],        # all images of the source set
     "categories": [{"id", "name", ...}, ...],                         # the source set's, original ids
     "annotations": [{"id": 1.., "image_id", "category_id": original id,
                      "segmentation": {"size": [h, w], "counts": str},  # compressed RLE
                      "bbox": [x, y, w, h],                             # tight box of the RLE
                      "area": mask pixels, "iscrowd": 0, "score": float,
                      "point": [x, y],                                  # original-image pixels
                      "level": int, "point_ann_id": int}, ...]}         # -1 when unknown / threshold

Streaming and restarts: ``reset()`` truncates this rank's part file
``<output>.part<rank>.jsonl``; ``process()`` appends one json line per image (its annotations without
ids) and flushes, so memory does not grow with the number of images. ``evaluate()`` synchronises the
ranks; the main process reads every rank's part file, keeps the first record of each image id, numbers
the annotations 1..N in that order, streams the final json into a temporary file next to the output
and moves it into place with ``os.replace``, then deletes the part files. An interrupted export thus
leaves at most stale part files, which the next ``reset()`` truncates: re-running the export from the
start never duplicates annotations, and the output file only ever appears complete (the part-file
helpers are :mod:`wssis_d2.utils.part_files`, shared with the MaskRefineNet refinement).
"""
import datetime
import itertools
import json
import logging
import os
from typing import Dict, Iterable, List, Optional

import pycocotools.mask as mask_util

import detectron2.utils.comm as comm
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.evaluation.coco_evaluation import instances_to_coco_json

from ..data.coco_masks import rle_areas
from ..data.json_io import load_json
from ..pseudo.data import default_export_path
from ..utils.part_files import atomic_output, open_part, read_records, write_record

__all__ = ["PseudoLabelExporter", "build_pseudo_label_exporter", "instances_to_pseudo_annotations",
           "pseudo_label_settings", "pseudo_label_totals", "write_pseudo_label_json"]

logger = logging.getLogger(__name__)

POINT_CONVENTION = ("continuous pixel coordinates of the original image: pixel (row i, col j) centre = "
                    "(j + 0.5, i + 0.5)")


def instances_to_pseudo_annotations(instances, image_id: int, contiguous_to_id: Dict[int, int]) -> List[dict]:
    """COCO annotations (without ``id``) of one image's point-decoder output.

    Args:
        instances: ``Instances`` with pred_masks (K, h, w) bool at the original image size, scores,
            pred_classes (contiguous), pred_points (K, 2) original-image pixels, pred_levels, point_ids.
        image_id: the COCO image id.
        contiguous_to_id: contiguous class index -> original category id.

    Returns:
        list of K dicts with the keys of the module docstring except ``id``: detectron2's
        ``instances_to_coco_json`` (RLE, score, class) with the original category id, bbox and area of
        the encoded RLE (so they always agree with the mask) and the point fields added.
    """
    missing = [f for f in ("pred_points", "pred_levels", "point_ids") if not instances.has(f)]
    if missing:
        raise ValueError(
            f"Image {image_id}: the model output lacks {missing}; pseudo-labels come from point images "
            "(inputs with 'point_instances', see wssis_d2.pseudo.build_pseudo_label_loader)"
        )
    instances = instances.to("cpu")
    coco = instances_to_coco_json(instances, int(image_id))  # image_id, category_id, bbox, score, segmentation
    if not coco:
        return []
    rles = [d["segmentation"] for d in coco]
    boxes = mask_util.toBbox(rles)  # the tight box of the RLE, not the scaled pred_boxes
    # pixel counts of the encoded RLEs (summing K full-size masks took seconds on large crowded images)
    areas = rle_areas(rles)
    points = instances.pred_points.tolist()
    levels = instances.pred_levels.tolist()
    point_ids = instances.point_ids.tolist()
    return [
        {
            "image_id": d["image_id"],
            "category_id": int(contiguous_to_id[int(d["category_id"])]),
            "segmentation": {"size": [int(v) for v in d["segmentation"]["size"]], "counts": d["segmentation"]["counts"]},
            "bbox": [float(v) for v in box],
            "area": int(area),
            "iscrowd": 0,
            "score": float(d["score"]),
            "point": [round(float(v), 3) for v in point],
            "level": int(level),
            "point_ann_id": int(pid),
        }
        for d, box, area, point, level, pid in zip(coco, boxes, areas, points, levels, point_ids)
    ]


COUNTED = ("num_points", "num_invalid_points", "num_points_without_mask", "num_collisions",
           "num_cross_class_collisions", "num_points_capped", "num_points_retried", "num_points_rescued")


def pseudo_label_totals(records: Iterable[dict]) -> Dict[str, Optional[int]]:
    """The counts of ``info`` over per-image records ({"image_id", "stats": a decoder's ``point_stats``,
    "annotations"}), read once: num_images_processed, num_annotations, num_images_without_pseudo_labels
    and the sums of :data:`COUNTED` (None when an image's stats lack it: threshold mode). An image without
    points (or whose points all lost their mask) is a record without annotations. An image whose
    MAX_PER_IMAGE cap dropped points is logged."""
    totals = {"num_images_processed": 0, "num_annotations": 0, "num_images_without_pseudo_labels": 0,
              **{k: 0 for k in COUNTED}}
    for record in records:
        stats = record["stats"]
        totals["num_images_processed"] += 1
        totals["num_annotations"] += len(record["annotations"])
        totals["num_images_without_pseudo_labels"] += not record["annotations"]
        for key in COUNTED:
            if totals[key] is not None:
                totals[key] = None if stats.get(key) is None else totals[key] + int(stats[key])
        if stats.get("num_points_capped"):
            logger.warning(f"Image {record['image_id']}: MODEL.WSSIS.MAX_PER_IMAGE dropped "
                           f"{stats['num_points_capped']} of {stats['num_points']} points (no pseudo-label)")
    return totals


def write_pseudo_label_json(path: str, info: dict, images: List[dict], categories: List[dict],
                            records: Iterable[dict]) -> None:
    """Write the pseudo-label json of the module docstring to ``path`` atomically, streaming the
    annotations of ``records`` (per-image records, read once, their "annotations" without ids) numbered
    1..N in that order. ``info`` gets ``point_convention`` and ``date_created``."""
    info = dict(info, point_convention=POINT_CONVENTION,
                date_created=datetime.datetime.now().isoformat(timespec="seconds"))
    with atomic_output(path) as f:
        f.write('{"info": ' + json.dumps(info))
        f.write(', "images": ' + json.dumps(images))
        f.write(', "categories": ' + json.dumps(categories))
        f.write(', "annotations": [')
        ann_id = itertools.count(1)
        first = True
        for record in records:
            for ann in record["annotations"]:
                f.write(("" if first else ", ") + json.dumps({"id": next(ann_id), **ann}))
                first = False
        f.write("]}\n")


def pseudo_label_settings(cfg) -> dict:
    """The decoder settings of ``cfg`` recorded in ``info["settings"]``."""
    w = cfg.MODEL.WSSIS
    return {
        "fixed_level": w.FIXED_LEVEL,
        "threshold": w.THRESHOLD,
        "max_per_image": w.MAX_PER_IMAGE,
        "collision_rule": w.COLLISION_RULE,
        "tiny_mask_rule": w.TINY_MASK_RULE,
        "nms_iou": w.NMS_IOU if w.NMS_IOU is not None and w.NMS_IOU >= 0 else None,
        "mask_thr": cfg.MODEL.SOLOV2.MASK_THR,
    }


def _source_images_and_categories(dataset_name):
    """(images, categories, json_file) of the source dataset: from its json when the metadata names one
    (original category records), else from its dataset dicts and ``thing_classes``."""
    meta = MetadataCatalog.get(dataset_name)
    json_file = meta.get("json_file", None)
    if json_file and os.path.isfile(json_file):
        coco = load_json(json_file)
        images = [{k: img[k] for k in ("id", "file_name", "height", "width")} for img in coco["images"]]
        return images, coco["categories"], json_file
    image_root = meta.get("image_root", "") or ""
    images = []
    for d in DatasetCatalog.get(dataset_name):
        name = os.path.relpath(d["file_name"], image_root) if image_root else d["file_name"]
        images.append({"id": d["image_id"], "file_name": name, "height": d["height"], "width": d["width"]})
    id_map = meta.thing_dataset_id_to_contiguous_id
    categories = [{"id": int(i), "name": meta.thing_classes[c]} for i, c in sorted(id_map.items())]
    return images, categories, None


class PseudoLabelExporter(DatasetEvaluator):
    """Writes the pseudo-labels of a points dataset to a COCO json (module docstring: schema, streaming,
    restarts). Works with ``inference_on_dataset`` like any detectron2 evaluator."""

    def __init__(
        self,
        dataset_name: str,
        output_path: str,
        *,
        mode: Optional[str] = None,
        config_file: Optional[str] = None,
        weights: Optional[str] = None,
        settings: Optional[dict] = None,
        distributed: bool = True,
    ):
        """
        Args:
            dataset_name: the registered source dataset (metadata: thing_dataset_id_to_contiguous_id,
                json_file, image_root).
            output_path: the json to write.
            mode, config_file, weights, settings: recorded in ``info``.
            distributed: gather the part files of all ranks (False: only this process's).
        """
        self._dataset_name = dataset_name
        self._output_path = os.fspath(output_path)
        self._info = {"mode": mode, "config_file": config_file, "weights": weights, "settings": settings or {}}
        self._distributed = distributed
        meta = MetadataCatalog.get(dataset_name)
        id_map = meta.get("thing_dataset_id_to_contiguous_id", None)
        if id_map is None:
            # Point loaders fill the mapping when the data is first loaded.
            DatasetCatalog.get(dataset_name)
            id_map = meta.get("thing_dataset_id_to_contiguous_id", None)
        if id_map is None:
            raise ValueError(f"Dataset {dataset_name!r} has no thing_dataset_id_to_contiguous_id metadata")
        self._contiguous_to_id = {int(v): int(k) for k, v in id_map.items()}
        self._file = None

    def part_path(self, rank: int) -> str:
        """The part file of ``rank``."""
        return f"{self._output_path}.part{rank}.jsonl"

    def reset(self):
        if self._file is not None:
            self._file.close()
        self._file = open_part(self.part_path(comm.get_rank() if self._distributed else 0), resume=False)

    def process(self, inputs, outputs):
        if self._file is None:
            raise RuntimeError("PseudoLabelExporter.process() called before reset()")
        for inp, out in zip(inputs, outputs):
            image_id = inp["image_id"]
            annotations = instances_to_pseudo_annotations(out["instances"], image_id, self._contiguous_to_id)
            stats = out.get("point_stats") or {}
            write_record(self._file, {"image_id": image_id, "stats": stats, "annotations": annotations})

    def evaluate(self):
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._distributed:
            comm.synchronize()
            if not comm.is_main_process():
                return {}
            parts = [self.part_path(r) for r in range(comm.get_world_size())]
        else:
            parts = [self.part_path(0)]

        totals = pseudo_label_totals(read_records(parts))  # pass 1: counts for "info" (small lines)
        images, categories, json_file = _source_images_and_categories(self._dataset_name)
        meta = MetadataCatalog.get(self._dataset_name)
        info = {
            "tool": "wssis_d2.evaluation.PseudoLabelExporter",
            **self._info,
            "dataset": self._dataset_name,
            "image_root": meta.get("image_root", None),
            "source_json": json_file,
            "num_images": len(images),
            **totals,
        }
        write_pseudo_label_json(self._output_path, info, images, categories, read_records(parts))  # pass 2
        for part in parts:
            os.remove(part)
        logger.info(
            f"Wrote {totals['num_annotations']} pseudo-labels for {totals['num_images_processed']} images of "
            f"{self._dataset_name} to {self._output_path} ({totals['num_images_without_pseudo_labels']} images "
            f"without any, {totals['num_points']} points, "
            f"{totals['num_points_without_mask']} without mask, {totals['num_collisions']} lost their first-choice "
            f"cell to another point (same-cell collisions; {totals['num_cross_class_collisions']} points chose a "
            f"cell that a point of another class chose too), {totals['num_points_capped']} dropped by MAX_PER_IMAGE, "
            f"{totals['num_points_rescued']} of {totals['num_points_retried']} whose first choice gave no mask "
            "rescued by another level or a lower mask threshold (MODEL.WSSIS.EMPTY_MASK_RETRY))"
        )
        summary = {k: float(v) for k, v in totals.items() if v is not None}
        return {"pseudo_labels": summary}


def build_pseudo_label_exporter(cfg, dataset_name, output_path=None):
    """``PseudoLabelExporter`` for ``dataset_name`` writing to ``output_path`` (default:
    ``wssis_d2.pseudo.default_export_path``), recording the config's mode settings and weights."""
    w = cfg.MODEL.WSSIS
    dumped = os.path.join(cfg.OUTPUT_DIR, "config.yaml")  # written by detectron2's default_setup
    return PseudoLabelExporter(
        dataset_name,
        output_path or default_export_path(cfg, dataset_name),
        mode=w.PSEUDO_LABEL_MODE,
        config_file=dumped if os.path.isfile(dumped) else None,
        weights=cfg.MODEL.WEIGHTS or None,
        settings=pseudo_label_settings(cfg),
    )
