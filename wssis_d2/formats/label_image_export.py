"""COCO instances json -> label images for Cellpose, StarDist, napari and Fiji (``--format label-images``).

(The other direction, label images -> COCO, is :mod:`wssis_d2.formats.label_images`.)

One label image per image: (H, W), 0 background, ids 1..M over the image's kept objects **in annotation
order** (the k-th annotation of the image that keeps at least one pixel has id k), uint16, or uint32 when
an image has more than 65,535 objects. Overlaps are flattened by :mod:`.flatten` (rule ``score`` by
default: the higher score wins; each object keeps its own click pixel; objects left with no pixel are
counted, listed in ``label_images_info.json`` and logged, never silent).

Files (``layout``):

* ``cellpose``: ``<output>/<file_name stem>_masks.tif`` (sub folders of ``file_name`` kept), the name
  Cellpose's ``--mask_filter _masks`` and GUI "autoload masks" look for beside ``<stem>.<ext>``;
* ``stardist``: ``<output>/masks/<file_name>``, the image's own file name (StarDist pairs
  ``images/x.tif`` with ``masks/x.tif``); a ``.png`` image gets a 16-bit PNG mask of the same name, any
  other extension a ``.tif`` mask with that stem (counted as "masks renamed to .tif").

TIFF: ``tifffile.imwrite(..., photometric="minisblack", compression="zlib")``, one page, not tiled (Fiji
cannot open tiled TIFFs; minisblack so no shape is taken for RGB). ``png=True`` (cellpose layout): 16-bit
PNG (``_masks.png``) read back with ``cv2.imread(path, -1)``; an image with more than 65,535 objects is then
still written as TIFF (counted). ``copy_images``: the images are copied beside the masks (cellpose) or to
``<output>/images/`` (stardist), ready for training.

Beside each mask, ``<mask stem>_objects.csv`` (cellpose: ``<stem>_objects.csv``) with one row per
annotation: ``index`` (annotation order), ``axis-0``, ``axis-1`` (the click as row, col in napari's pixel
convention, pixel centres at integers: row = y - 0.5, col = x - 0.5; an object without a click gets its
mask's centre of mass), ``label`` (its id in the label image, 0 = lost), ``category_id``, ``category``,
``score``. napari opens it as a Points layer (its columns as properties); ``{label: category_id}`` of the
rows with label > 0 is StarDist's class dict (:func:`read_class_dict`).
"""
import csv
import io
import logging
import os
import shutil
from collections import Counter
from typing import Dict, List, Optional

import cv2
import numpy as np
import tifffile

from ..data.coco_masks import decode_segmentation
from ..data.json_io import write_json_atomic
from ..data.point_utils import annotation_point
from ..utils.errors import WSSISInputError
from ..utils.part_files import atomic_output
from .flatten import OVERLAP_RULES, flatten_objects

__all__ = ["LAYOUTS", "CSV_COLUMNS", "write_label_image", "image_objects", "export_label_images",
           "read_class_dict", "mask_path"]

logger = logging.getLogger(__name__)

LAYOUTS = ("cellpose", "stardist")
CSV_COLUMNS = ("index", "axis-0", "axis-1", "label", "category_id", "category", "score")
INFO_FILE = "label_images_info.json"


def write_label_image(labels: np.ndarray, path: str) -> str:
    """Write an (H, W) integer label image atomically: ``.tif``/``.tiff`` with tifffile (minisblack, zlib,
    untiled), ``.png`` as 16-bit PNG (an error for ids above 65,535). Returns ``path``."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype.kind not in "ui":
        raise ValueError(f"{path}: a label image is (H, W) integers, got {labels.dtype} {labels.shape}")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".png":
        if labels.size and labels.max() > np.iinfo(np.uint16).max:
            raise ValueError(f"{path}: ids up to {labels.max()} do not fit a 16-bit PNG; write a TIFF")
        ok, buf = cv2.imencode(".png", labels.astype(np.uint16))
        if not ok:
            raise OSError(f"{path}: PNG encoding failed")
        with atomic_output(path, "wb") as f:
            f.write(buf.tobytes())
    elif ext in (".tif", ".tiff"):
        buf = io.BytesIO()
        tifffile.imwrite(buf, labels, photometric="minisblack", compression="zlib")
        with atomic_output(path, "wb") as f:
            f.write(buf.getvalue())
    else:
        raise ValueError(f"{path}: label images are written as .tif, .tiff or .png")
    return path


def mask_path(file_name: str, layout: str, png: bool = False) -> str:
    """The label image's path relative to the output folder for image ``file_name`` (module docstring)."""
    stem, ext = os.path.splitext(file_name)
    if layout == "cellpose":
        return stem + ("_masks.png" if png else "_masks.tif")
    if layout == "stardist":
        return os.path.join("masks", file_name if ext.lower() in (".tif", ".tiff", ".png") else stem + ".tif")
    raise ValueError(f"unknown layout {layout!r}; choose from {list(LAYOUTS)}")


def image_objects(img: dict, anns: List[dict]):
    """Decode one image's annotations: (pixels: flat index arrays, clicks (N, 2) [x, y] or NaN, scores (N,)).
    An annotation without a mask (a click alone) has no pixels."""
    h, w = int(img["height"]), int(img["width"])
    pixels, clicks, scores = [], np.full((len(anns), 2), np.nan), np.ones(len(anns))
    for k, a in enumerate(anns):
        segm = a.get("segmentation")
        pixels.append(np.flatnonzero(decode_segmentation(segm, h, w)) if segm not in (None, [])
                      else np.zeros(0, np.int64))
        xy = annotation_point(a)
        if xy is not None:
            clicks[k] = xy
        scores[k] = a.get("score", 1.0)
    return pixels, clicks, scores


def _csv_rows(anns, pixels, clicks, ids, width, cats):
    rows = []
    for k, a in enumerate(anns):
        if not np.isnan(clicks[k]).any():
            r, c = clicks[k][1] - 0.5, clicks[k][0] - 0.5
        elif len(pixels[k]):
            r, c = float(np.mean(pixels[k] // width)), float(np.mean(pixels[k] % width))
        else:
            r = c = float("nan")
        rows.append([k, round(float(r), 3), round(float(c), 3), int(ids[k]), a["category_id"],
                     cats.get(a["category_id"], str(a["category_id"])), round(float(a.get("score", 1.0)), 6)])
    return rows


def read_class_dict(csv_path: str) -> Dict[int, int]:
    """StarDist's ``{label id: class id}`` from an objects CSV (rows with label > 0; category ids as
    written: map them to 1..n_classes if your categories are not already numbered so)."""
    with open(csv_path, newline="") as f:
        return {int(row["label"]): int(row["category_id"]) for row in csv.DictReader(f) if int(row["label"]) > 0}


def export_label_images(coco: dict, output_dir: str, image_root: Optional[str] = None, *, layout: str = "cellpose",
                        png: bool = False, overlap: str = "score", copy_images: bool = False) -> Counter:
    """Write one label image and one objects CSV per image of ``coco`` into ``output_dir`` (module
    docstring), and ``label_images_info.json`` (the rules, the counts, the annotation ids of the objects
    lost to overlaps per image). Returns the counts."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose from {list(LAYOUTS)}")
    if overlap not in OVERLAP_RULES:
        raise ValueError(f"unknown overlap rule {overlap!r}; choose from {list(OVERLAP_RULES)}")
    if png and layout != "cellpose":
        raise ValueError("png is for the cellpose layout (stardist masks take the image's own file name and type)")
    if copy_images and not image_root:
        raise WSSISInputError("copy_images needs the image root")
    cats = {c["id"]: c["name"] for c in coco["categories"]}
    by_image = {img["id"]: [] for img in coco["images"]}
    for a in coco["annotations"]:
        by_image[a["image_id"]].append(a)
    counts, lost_ids, files = Counter(), {}, []
    for img in coco["images"]:
        anns = by_image[img["id"]]
        pixels, clicks, scores = image_objects(img, anns)
        flat = flatten_objects(pixels, (img["height"], img["width"]), scores=scores, clicks=clicks, rule=overlap)
        rel = mask_path(img["file_name"], layout, png)
        if rel.endswith(".png") and flat["labels"].dtype == np.uint32:
            rel = os.path.splitext(rel)[0] + ".tif"
            counts["masks written as TIFF (more than 65,535 objects)"] += 1
        if layout == "stardist" and os.path.splitext(rel)[1] != os.path.splitext(img["file_name"])[1]:
            counts["masks renamed to .tif"] += 1
        write_label_image(flat["labels"], os.path.join(output_dir, rel))
        stem = os.path.splitext(rel)[0]
        stem = stem[: -len("_masks")] if layout == "cellpose" else stem
        with atomic_output(os.path.join(output_dir, stem + "_objects.csv")) as f:
            writer = csv.writer(f)
            writer.writerow(CSV_COLUMNS)
            writer.writerows(_csv_rows(anns, pixels, clicks, flat["ids"], int(img["width"]), cats))
        if copy_images:
            dest = img["file_name"] if layout == "cellpose" else os.path.join("images", img["file_name"])
            os.makedirs(os.path.dirname(os.path.join(output_dir, dest)) or output_dir, exist_ok=True)
            shutil.copy2(os.path.join(image_root, img["file_name"]), os.path.join(output_dir, dest))
        has_mask = np.array([len(p) > 0 for p in pixels], bool)
        lost = flat["lost"] & has_mask
        if lost.any():
            lost_ids[img["file_name"]] = [anns[k]["id"] for k in np.flatnonzero(lost)]
        counts["images"] += 1
        counts["objects"] += int(has_mask.sum())
        counts["objects lost to overlaps"] += int(lost.sum())
        counts["objects partly hidden"] += int(((flat["hidden_pixels"] > 0) & ~lost).sum())
        counts["click pixels given back to their object"] += flat["clicks_restored"]
        counts["clicks outside their own mask"] += int(flat["clicks_outside_mask"].sum())
        counts["annotations without a mask (CSV only)"] += int((~has_mask).sum())
        files.append(rel)
    counts = Counter({k: v for k, v in counts.items() if v or k in ("images", "objects", "objects lost to overlaps")})
    write_json_atomic({"layout": layout, "overlap_rule": overlap, "ids": "1..M per image over the objects that kept "
                       "pixels, in annotation order (CSV column label; 0 = lost)", "counts": dict(counts),
                       "lost_annotation_ids": lost_ids, "masks": files},
                      os.path.join(output_dir, INFO_FILE), indent=1)
    if counts["objects lost to overlaps"]:
        logger.warning(f"{counts['objects lost to overlaps']} objects lost to overlaps (rule {overlap!r}); their "
                       f"annotation ids are in {os.path.join(output_dir, INFO_FILE)}")
    logger.info(f"Label images ({layout}) in {output_dir}: {dict(counts)}")
    return counts
