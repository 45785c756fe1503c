"""Export a COCO instances json (e.g. the pipeline's ``labels.json``) to labelme / CVAT for review.

Masks become polygons: the **outer contours** of the mask (``cv2.findContours`` with ``RETR_EXTERNAL``),
one polygon per connected part. Vertices are the centres of the mask's boundary pixels in pixel-index
coordinates (x = column, y = row), the convention labelme (PIL ``ImageDraw.polygon``) and CVAT fill
polygons with, so the tool shows the same pixels. Consequences:

* **holes are filled** (a ring comes back as a disk): only outer contours are exported;
* a **multi-part** mask gives one polygon per part: in labelme all parts of one annotation share a
  ``group_id`` (the annotation's index in its image); in CVAT each part is one ``<polygon>`` with the
  same ``group_id`` attribute;
* a part of 1 or 2 boundary pixels (no area as a polygon) is exported as a 3-vertex polygon around
  that pixel's centre (nothing is dropped).

Annotations without a mask but with ``point_coords`` (point-label files) are exported as points. An
annotation flagged by the pipeline (``wssis_flag``) is marked: labelme ``flags: {"<flag>": true}``,
CVAT attribute ``wssis_flag``; the score goes into labelme's ``description`` / CVAT's ``score`` attribute.
The review stage's per-annotation ``wssis_flags`` (list) and ``wssis_risk`` (``review/labels_review.json``;
its orphans carry ``wssis_flag`` "orphan") are passed through: labelme flags (one per name) and "risk" in the
description, CVAT attributes ``wssis_flags`` (comma-separated) and ``wssis_risk``.
"""
import logging
import os
import xml.etree.ElementTree as ET
from collections import Counter
from typing import List, Optional

import cv2
import numpy as np

from ..data.coco_masks import decode_segmentation
from ..data.json_io import write_json_atomic

__all__ = ["mask_to_polygons", "polygons_to_mask", "group_annotations", "export_labelme", "export_cvat"]

logger = logging.getLogger(__name__)

LABELME_VERSION = "5.2.1"


def mask_to_polygons(mask: np.ndarray) -> List[np.ndarray]:
    """Outer contours of a binary mask.

    Args:
        mask: (H, W) bool or uint8.

    Returns:
        list of (K, 2) float arrays, one per connected part, vertices (x, y) at boundary-pixel centres in
        pixel-index coordinates; K >= 3 (a 1-2 pixel part gets a small triangle on its pixel centre).
    """
    contours, _ = cv2.findContours(np.ascontiguousarray(mask, dtype=np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    out = []
    for c in contours:
        pts = c.reshape(-1, 2).astype(np.float64)
        if len(pts) < 3:
            x, y = pts[0]
            pts = np.array([[x - 0.5, y - 0.5], [x + 0.5, y - 0.5], [x, y + 0.5]])
        out.append(pts)
    return out


def polygons_to_mask(polygons, height: int, width: int) -> np.ndarray:
    """Fill polygons (pixel-index vertex coordinates, as :func:`mask_to_polygons` writes and labelme /
    CVAT draw them) into an (H, W) bool mask; a pixel is in when its centre is inside or on the edge."""
    mask = np.zeros((height, width), np.uint8)
    pts = [np.round(np.asarray(p, np.float64)).astype(np.int32).reshape(-1, 1, 2) for p in polygons]
    cv2.fillPoly(mask, pts, 1)
    cv2.polylines(mask, pts, True, 1)  # boundary pixels, as labelme's PIL fill includes them
    return mask.astype(bool)


def group_annotations(coco):
    """({category id: name}, {image id: [its annotations, in json order]}) of a COCO dict."""
    cats = {c["id"]: c["name"] for c in coco.get("categories", [])}
    by_image = {img["id"]: [] for img in coco["images"]}
    for a in coco["annotations"]:
        by_image[a["image_id"]].append(a)
    return cats, by_image


def _shapes(ann, img, counts):
    """(kind, [vertex arrays]) of one annotation: ("polygon", parts) or ("point", [[x, y]])."""
    if ann.get("segmentation") is not None and ann.get("segmentation") != []:
        mask = decode_segmentation(ann["segmentation"], img["height"], img["width"])
        parts = mask_to_polygons(mask)
        counts["multi-part masks"] += len(parts) > 1
        counts["empty masks"] += not parts
        return "polygon", parts
    if ann.get("point_coords"):
        return "point", [np.asarray(ann["point_coords"][0], np.float64).reshape(1, 2)]
    counts["annotations without mask or point"] += 1
    return None, []


def review_fields(ann) -> tuple:
    """(flag names, risk text) of an annotation: ``wssis_flag`` and the review's ``wssis_flags``, ``wssis_risk``."""
    names = ([ann["wssis_flag"]] if ann.get("wssis_flag") else []) + [
        f for f in ann.get("wssis_flags") or [] if f != ann.get("wssis_flag")]
    risk = f"{ann['wssis_risk']:.3f}" if ann.get("wssis_risk") is not None else ""
    return names, risk


def export_labelme(coco: dict, output_dir: str, image_root: str) -> Counter:
    """One labelme json per image under ``output_dir`` (``<file_name without extension>.json``, sub
    folders kept), ``imagePath`` relative to it. Returns the counts."""
    cats, by_image = group_annotations(coco)
    counts = Counter()
    for img in coco["images"]:
        out = os.path.join(output_dir, os.path.splitext(img["file_name"])[0] + ".json")
        image_path = os.path.join(image_root, img["file_name"])
        shapes = []
        for k, ann in enumerate(by_image[img["id"]]):
            kind, parts = _shapes(ann, img, counts)
            flags, risk = review_fields(ann)
            text = " ".join(([f"score {ann['score']:.3f}"] if "score" in ann else []) + ([f"risk {risk}"] if risk else []))
            for pts in parts:
                shapes.append({"label": cats.get(ann["category_id"], str(ann["category_id"])),
                               "points": [[round(float(x), 2), round(float(y), 2)] for x, y in pts],
                               "group_id": k if len(parts) > 1 else None, "shape_type": kind,
                               "flags": {f: True for f in flags}, "description": text})
            counts["annotations"] += 1
        counts["shapes"] += len(shapes)
        write_json_atomic({"version": LABELME_VERSION, "flags": {}, "shapes": shapes,
                           "imagePath": os.path.relpath(image_path, os.path.dirname(os.path.abspath(out))),
                           "imageData": None, "imageHeight": int(img["height"]), "imageWidth": int(img["width"])},
                          out, indent=1)
        counts["images"] += 1
    return counts


def export_cvat(coco: dict, output_dir: str, image_root: Optional[str] = None) -> Counter:
    """``output_dir/annotations.xml`` in "CVAT for images 1.1" (upload it to a task holding the same
    images: Actions > Upload annotations > CVAT 1.1). Returns the counts."""
    cats, by_image = group_annotations(coco)
    counts = Counter()
    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = "1.1"
    labels = ET.SubElement(ET.SubElement(ET.SubElement(root, "meta"), "task"), "labels")
    for name in cats.values():
        label = ET.SubElement(labels, "label")
        ET.SubElement(label, "name").text = name
        attrs = ET.SubElement(label, "attributes")
        for attr, kind, values in (("wssis_flag", "select", "\nfallback\norphan"), ("score", "text", ""),
                                   ("wssis_flags", "text", ""), ("wssis_risk", "text", "")):
            a = ET.SubElement(attrs, "attribute")
            ET.SubElement(a, "name").text = attr
            ET.SubElement(a, "mutable").text = "False"
            ET.SubElement(a, "input_type").text = kind
            ET.SubElement(a, "default_value").text = ""
            ET.SubElement(a, "values").text = values
    for i, img in enumerate(coco["images"]):
        el = ET.SubElement(root, "image", id=str(i), name=img["file_name"], width=str(img["width"]),
                           height=str(img["height"]))
        for k, ann in enumerate(by_image[img["id"]]):
            kind, parts = _shapes(ann, img, counts)
            tag = "polygon" if kind == "polygon" else "points"
            for pts in parts:
                attrs = {"label": cats.get(ann["category_id"], str(ann["category_id"])), "source": "auto",
                         "occluded": "0", "z_order": "0",
                         "points": ";".join(f"{x:.2f},{y:.2f}" for x, y in pts)}
                if len(parts) > 1:
                    attrs["group_id"] = str(k + 1)
                shape = ET.SubElement(el, tag, **attrs)
                ET.SubElement(shape, "attribute", name="wssis_flag").text = ann.get("wssis_flag") or ""
                ET.SubElement(shape, "attribute", name="score").text = (
                    f"{ann['score']:.3f}" if "score" in ann else "")
                flags, risk = review_fields(ann)
                ET.SubElement(shape, "attribute", name="wssis_flags").text = ",".join(flags)
                ET.SubElement(shape, "attribute", name="wssis_risk").text = risk
                counts["shapes"] += 1
            counts["annotations"] += 1
        counts["images"] += 1
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, "annotations.xml")
    ET.indent(root)
    ET.ElementTree(root).write(path + ".tmp", encoding="utf-8", xml_declaration=True)
    os.replace(path + ".tmp", path)
    return counts
