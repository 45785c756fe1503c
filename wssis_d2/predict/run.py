"""Predict the masks of a point-label json's clicks, image by image, into an output folder (``tools/predict.py``).

Output folder::

    predictions.json        the masks, in the pseudo-label export's schema (docs/PSEUDO_LABELS.md; written by
                            the export's writer), "info" with the run's settings and counts, and
                            "clicks_without_mask": [{"image_id", "category_id", "point", "point_ann_id"}]
                            (clicks the model gave no mask: not annotations, the schema has masks only)
    labelme/*.json          with --export labelme: one review file per image (``review_export``: outer-contour
    cvat/annotations.xml    polygons; clicks without a mask as point shapes), or --export cvat
    <format>/               with --export label-images / ctc / qupath / labelstudio (``wssis_d2.formats.exports``;
                            clicks without a mask: objects-CSV rows, Label Studio keypoints, counted elsewhere)
    review/                 with --review (``wssis_d2.review``): review.json / review.md (flags and risk per
                            click, orphans: confident detections of a click-free pass without a click, a review
                            rank per image), labels_review.json and overlays of the top-ranked images; the
                            --export files are then made from labels_review.json (flags, risk, orphans)
    overlays/<name>.png     with --overlay: every click's mask (class name and score) and its click, drawn by
                            ``wssis_d2.utils.visualize``; a click without a mask is a dot with its class name;
                            <name>: the image's path under the image root, "/" as "__" (sub/t1.tif: sub__t1)

Resume (the export's pattern, :mod:`wssis_d2.utils.part_files`): each finished image is one json line
appended and flushed to ``predictions.json.part.jsonl``; a run over the same folder skips the images the
part file holds (by file name) and drops an interrupted last line, so an interrupted run continues where it
stopped and no image is written twice. ``predictions.json`` is written atomically from the part file,
then the review files; the part file is removed last. Each line records the run's weights and decoder
settings: a part file of other settings is an error (``overwrite`` discards it).
"""
import logging
import os
from typing import Dict, List, Optional

import torch
from detectron2.evaluation.coco_evaluation import instances_to_coco_json
from tqdm import tqdm

from ..data.categories import contiguous_category_map
from ..data.datasets.point_instances import point_records_from_coco
from ..data.images import read_image
from ..data.coco_masks import encode_masks
from ..data.json_io import load_json
from ..formats.exports import EXPORT_FORMATS, export_coco
from ..data.validation import load_coco
from ..evaluation.pseudo_labels import (instances_to_pseudo_annotations, pseudo_label_settings, pseudo_label_totals,
                                        write_pseudo_label_json)
from ..utils.errors import WSSISInputError
from ..utils.part_files import open_part, read_records, write_record
from ..pseudo.labels import build_labels
from ..review.measure import score_review
from ..review.report import review_document, write_review
from ..review.review import review_dataset
from ..review.risk import ReviewSettings, settings_dict
from ..review.signals import area_stats, tile_grid
from ..utils.visualize import render_records

__all__ = ["PREDICTIONS", "predict_points", "run_settings", "image_record"]

logger = logging.getLogger(__name__)

PREDICTIONS = "predictions.json"


def run_settings(predictor) -> dict:
    """What makes two runs' predictions comparable: weights, mode, decoder and tile settings."""
    cfg = predictor.cfg
    return {"weights": os.path.abspath(cfg.MODEL.WEIGHTS) if cfg.MODEL.WEIGHTS else "",
            "mrn_weights": os.path.abspath(predictor.mrn_cfg.MODEL.WEIGHTS) if predictor.mrn_cfg else None,
            "mode": cfg.MODEL.WSSIS.PSEUDO_LABEL_MODE, "settings": pseudo_label_settings(cfg),
            "tile": [cfg.INPUT.TILE.SIZE, cfg.INPUT.TILE.OVERLAP, cfg.INPUT.TILE.SCALE],  # lists: json round trip
            "test_size": [cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST]}


def image_record(instances, record: dict, contiguous_to_id: Dict[int, int]) -> dict:
    """The part-file line of one image: its predictions (``PointPredictor`` output, one row per click of
    ``record["annotations"]``) as pseudo-label annotations (``point_ann_id``: the click's annotation id;
    ``refined`` where a MaskRefineNet ran) and its clicks without a mask."""
    instances = instances.to("cpu")
    ann_ids = torch.tensor([-1 if a.get("id") is None else int(a["id"]) for a in record["annotations"]],
                           dtype=torch.long)
    instances.point_ids = ann_ids[instances.point_ids]
    with_mask = instances[~instances.no_mask]
    annotations = instances_to_pseudo_annotations(with_mask, record["image_id"], contiguous_to_id)
    if with_mask.has("refined"):
        for ann, refined in zip(annotations, with_mask.refined.tolist()):
            ann["refined"] = bool(refined)
    missing = instances[instances.no_mask]
    clicks = [{"image_id": record["image_id"], "category_id": contiguous_to_id[int(c)],
               "point": [round(float(v), 3) for v in p], "point_ann_id": int(i)}
              for c, p, i in zip(missing.pred_classes.tolist(), missing.pred_points, missing.point_ids.tolist())]
    return {"file_name": record["file_name"], "image_id": record["image_id"], "annotations": annotations,
            "clicks_without_mask": clicks}


def review_record(predictor, image, instances, record: dict, contiguous_to_id: Dict[int, int],
                  min_score: float) -> dict:
    """The review part of an image's part-file line: {"plain": detections of the click-free pass with score >=
    ``min_score`` (``category_id``, ``segmentation`` RLE, ``bbox`` XYWH, ``score``), "coarse": {click id: RLE of
    its mask before MaskRefineNet} (empty without one)}."""
    plain = predictor.plain(image).to("cpu")
    plain = plain[plain.scores >= min_score]
    dets = instances_to_coco_json(plain, int(record["image_id"])) if len(plain) else []
    for d in dets:
        d["category_id"] = contiguous_to_id[int(d["category_id"])]
    coarse = {}
    if instances.has("coarse_masks"):
        rows = torch.nonzero(~instances.no_mask.cpu()).squeeze(1)
        ids = [record["annotations"][int(instances.point_ids[k])]["id"] for k in rows.tolist()]
        coarse = dict(zip(ids, encode_masks(instances.coarse_masks[rows].cpu().numpy()))) if len(rows) else {}
    return {"plain": dets, "coarse": coarse}


def _review_run(predictions: str, points: dict, records: list, image_root: str, output_dir: str,
                settings: ReviewSettings, areas_from: Optional[dict], tiles=None) -> dict:
    """The review of a finished prediction run (``wssis_d2.review``) into ``output_dir/review``."""
    labels = build_labels({"images": [], "annotations": [], "categories": points["categories"]}, points,
                          load_json(predictions), names=("-", "clicks", predictions),
                          image_root=os.path.abspath(image_root))
    plain = {"annotations": [d for rec in records for d in rec["review"]["plain"]]}
    coarse = {int(k): v for rec in records for k, v in rec["review"]["coarse"].items()}
    reference = (areas_from or {}).get("annotations") or labels["annotations"]
    review = review_dataset(labels, coarse=coarse or None, plain=plain, stats=area_stats(reference), tiles=tiles,
                            settings=settings)
    info = {"predictions": predictions, "areas_from": "--categories json" if areas_from else "the predicted masks",
            "mrn": bool(coarse), "tiles": tiles is not None}
    review = review_document(review, info, settings_dict(settings), score_review(labels, review["clicks"]))
    folder = os.path.join(output_dir, "review")
    out = write_review(review, labels, folder, image_root=os.path.abspath(image_root),
                       orphan_weight=settings.orphan_weight)
    return dict(out, folder=folder)


def _overlay(record: dict, names: Dict[int, str], folder: str, relative: str) -> None:
    """Draw one image's predictions and its clicks without a mask (``utils.visualize``) into
    ``folder/<relative path without extension, "/" as "__">.png`` (``sub/t1.tif`` -> ``sub__t1.png``)."""
    anns = record["annotations"] + [{"category_id": c["category_id"], "point": c["point"]}
                                    for c in record["clicks_without_mask"]]
    name = os.path.splitext(relative)[0].replace("\\", "/").replace("/", "__")
    render_records([{"file_name": record["file_name"], "image_id": record["image_id"], "annotations": anns,
                     "overlay_name": name}], lambda c: names.get(c, str(c)), folder, max_images=1)


def _restamped(records, image_ids: Dict[str, int]):
    """Part-file records of the current images, image ids set from the current point json (by file name)."""
    for rec in records:
        image_id = image_ids.get(rec["file_name"])
        if image_id is None:
            logger.warning(f"{rec['file_name']}: in the part file but not among the images now: left out")
            continue
        rec["image_id"] = image_id
        for ann in rec["annotations"] + rec["clicks_without_mask"] + (rec.get("review") or {}).get("plain", []):
            ann["image_id"] = image_id
        yield rec


def predict_points(predictor, points: dict, image_root: str, output_dir: str, *, export: Optional[str] = None,
                   export_options: Optional[dict] = None, overlay: bool = False, overwrite: bool = False,
                   info: Optional[dict] = None, progress: bool = True, review: Optional[ReviewSettings] = None,
                   areas_from: Optional[dict] = None) -> dict:
    """Predict every click of the point-label json ``points`` (docs/DATA.md; images under ``image_root``)
    with ``predictor`` (a ``PointPredictor``) into ``output_dir`` (module docstring), resuming an
    interrupted run.

    Args:
        export: None or a format of ``wssis_d2.formats.exports.EXPORT_FORMATS`` ("labelme", "cvat",
            "label-images", "ctc", "qupath", "labelstudio").
        export_options: the writer's options (``--layout``, ``--overlap``, ...; ``exports.OPTIONS``).
        overlay: draw ``overlays/<relative path, "/" as "__">.png`` per image.
        overwrite: discard the part file of an earlier run instead of resuming it.
        info: extra ``info`` fields of predictions.json (e.g. the config file, the click source).
        progress: a progress bar over the images (stderr).
        review: review the masks with these settings (a click-free pass per image as well; module docstring).
        areas_from: a COCO json (dict) whose masks give each class's size distribution for the review's area
            flag (default: the predicted masks).

    Returns:
        {"predictions", "review" (None without export), "overlays" (None without overlay), "num_images",
        "num_resumed", "num_clicks", "num_masks", "num_clicks_without_mask", "ranked" (with ``review``: the
        review's files, {"review", "review_md", "labels_review", ...}, else None)}.

    Raises:
        WSSISInputError: an image that cannot be read or whose size is not the one the clicks were made
            on, a part file of other settings; and what :class:`PointPredictor` raises.
    """
    if export is not None and export not in EXPORT_FORMATS:
        raise WSSISInputError(f"unknown export format {export!r}; choose from {sorted(EXPORT_FORMATS)}")
    os.makedirs(output_dir, exist_ok=True)
    output = os.path.join(output_dir, PREDICTIONS)
    part = output + ".part.jsonl"
    settings = dict(run_settings(predictor), review=None if review is None else settings_dict(review))
    if overwrite and os.path.exists(part):
        os.remove(part)
    done = set()
    if os.path.exists(part):
        for rec in read_records([part], key="file_name"):
            if rec["run"] != settings:
                raise WSSISInputError(f"{part} holds predictions of another run ({rec['run']}); this run: {settings}. "
                                      "Use --overwrite to discard it, or another --output")
            done.add(rec["file_name"])
    categories = points["categories"]
    names = {int(c["id"]): c["name"] for c in categories}
    contiguous_to_id = {v: k for k, v in contiguous_category_map(categories).items()}
    records = point_records_from_coco(points, points.get("info", {}).get("source", "clicks"), image_root)
    relative = {img["id"]: img["file_name"] for img in points["images"]}  # records hold full paths
    pending = [r for r in records if relative[r["image_id"]] not in done]
    logger.info(f"Predicting {len(records)} images ({sum(len(r['annotations']) for r in records)} clicks) into "
                f"{output_dir}: {len(records) - len(pending)} done earlier, {len(pending)} to do")
    overlay_dir = os.path.join(output_dir, "overlays")
    with open_part(part, resume=True) as f:
        for rec in tqdm(pending, desc="predict", unit="image", disable=not progress):
            image = read_image(rec["file_name"], predictor.input_format, rec["image_id"])
            if image.shape[:2] != (rec["height"], rec["width"]):
                raise WSSISInputError(f"{rec['file_name']} (image id {rec['image_id']}): the image is "
                                      f"{image.shape[1]} x {image.shape[0]}, the clicks were made on "
                                      f"{rec['width']} x {rec['height']} (another image, or EXIF rotation?)")
            clicks = [a["point_coords"][0] for a in rec["annotations"]]
            classes = [a["category_id"] for a in rec["annotations"]]
            out = predictor.predict(image, clicks, classes, keep_coarse=review is not None)
            line = image_record(out["instances"], rec, contiguous_to_id)
            if review is not None:
                line["review"] = review_record(predictor, image, out["instances"], rec, contiguous_to_id,
                                               review.orphan_score)
            if overlay:
                _overlay(line, names, overlay_dir, relative[rec["image_id"]])
            line.update(file_name=relative[rec["image_id"]], stats=out["point_stats"], run=settings)
            write_record(f, line)

    image_ids = {img["file_name"]: img["id"] for img in points["images"]}
    totals = pseudo_label_totals(_restamped(read_records([part], key="file_name"), image_ids))
    without = [c for rec in _restamped(read_records([part], key="file_name"), image_ids)
               for c in rec["clicks_without_mask"]]
    images = [{k: img[k] for k in ("id", "file_name", "height", "width")} for img in points["images"]]
    meta = {"tool": "tools/predict.py (wssis_d2.predict.PointPredictor)", **(info or {}), **settings,
            "image_root": os.path.abspath(image_root), "num_images": len(images), **totals,
            "clicks_without_mask": without}
    write_pseudo_label_json(output, meta, images, categories,
                            _restamped(read_records([part], key="file_name"), image_ids))
    ranked = None
    if review is not None:
        ranked = _review_run(output, points, list(_restamped(read_records([part], key="file_name"), image_ids)),
                             image_root, output_dir, review, areas_from,
                             tile_grid(predictor.cfg.INPUT.TILE.SIZE, predictor.cfg.INPUT.TILE.OVERLAP))
    files = None
    if export and ranked:
        folder = os.path.join(output_dir, export)
        counts = export_coco(load_coco(ranked["labels_review"], "pseudo"), export, folder, image_root,
                             **(export_options or {}))
        logger.info(f"Review files ({export}, with the review's flags, risk and orphans) in {folder}: {counts}")
        files = _export_path(export, folder)
    elif export:
        files = _review(output, without, export, output_dir, image_root, export_options or {})
    os.remove(part)
    return {"predictions": output, "review": files, "overlays": overlay_dir if overlay else None,
            "num_images": len(images), "num_resumed": len(records) - len(pending),
            "num_clicks": totals["num_points"], "num_masks": totals["num_annotations"],
            "num_clicks_without_mask": len(without), "ranked": ranked}


def _review(predictions: str, without: List[dict], fmt: str, output_dir: str, image_root: str, options: dict) -> str:
    """Review files of ``predictions`` in ``fmt`` with the clicks without a mask as points; returns where."""
    coco = load_coco(predictions, "pseudo")
    next_id = max([a["id"] for a in coco["annotations"]], default=0) + 1
    coco["annotations"] = coco["annotations"] + [
        {"id": next_id + k, "image_id": c["image_id"], "category_id": c["category_id"], "point_coords": [c["point"]],
         "point_labels": [1], "score": 0.0} for k, c in enumerate(without)]
    folder = os.path.join(output_dir, fmt)
    counts = export_coco(coco, fmt, folder, image_root, **options)
    logger.info(f"Review files ({fmt}) in {folder}: {counts}")
    return _export_path(fmt, folder)


def _export_path(fmt: str, folder: str) -> str:
    """Where the export ``fmt`` in ``folder`` is: its one file (CVAT, Label Studio), else the folder."""
    return {"cvat": os.path.join(folder, "annotations.xml"), "labelstudio": os.path.join(folder, "tasks.json")}.get(
        fmt, folder)
