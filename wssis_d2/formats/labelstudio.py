"""Label Studio pre-annotations: masks <-> Label Studio result regions, and the task file of a COCO json.

(The clicks Label Studio exports are read by :mod:`wssis_d2.formats.importers.labelstudio`.)

Regions (one per object, so overlapping objects stay separate layers in Label Studio):

* **brush** (default): ``{"type": "brushlabels", "value": {"format": "rle", "rle": [bytes], "brushlabels":
  [label]}}``. Label Studio's RLE is **not COCO's**: a bit-packed run-length stream over the RGBA-flattened,
  row-major (H, W, 4) mask, written and read here with the encoder / decoder of the Label Studio SDK
  (``label_studio_sdk.converter.brush``: ``mask2rle``, ``decode_rle``); keeps holes and several parts.
* **polygon** (``polygons=True``): ``{"type": "polygonlabels", "value": {"points": [[x%, y%], ...],
  "polygonlabels": [label]}}``, one region per 4-connected part, traced along pixel edges
  (:mod:`.edge_polygons`); a Label Studio polygon has no holes, so holes are filled and **counted**.
* review flags and risk (``wssis_flags`` / ``wssis_risk`` of ``review/labels_review.json``, or ``wssis_flag``) go
  into each region of the object as ``meta.text`` ("review: flags (risk r)"), shown in Label Studio's region panel;
* **keypoint** for each click: ``{"type": "keypointlabels", "value": {"x": x%, "y": y%, "width": 1,
  "keypointlabels": [label]}}``.

Coordinates: Label Studio gives x, y in **percent** of ``original_width`` / ``original_height``, origin at the
image's top-left corner: x% = 100 * x / W for x in continuous pixel coordinates (a click at pixel (row i,
col j) is (j + 0.5, i + 0.5)); polygon vertices are pixel corners (integers before scaling).

Every region has ``id``, ``from_name`` / ``to_name`` (the labeling config's tag names, :data:`TAG_NAMES`),
``type``, ``original_width``, ``original_height``, ``image_rotation`` 0, and ``score`` when the object has one.
A prediction is ``{"model_version", "score", "result": [regions]}``; a task ``{"data": {"image": url},
"predictions": [prediction]}``. Pure functions (no I/O) apart from :func:`export_labelstudio`.
"""
import contextlib
import io
import logging
import os
from collections import Counter
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..data.coco_masks import decode_segmentation
from ..data.json_io import write_json_atomic
from ..data.point_utils import annotation_point
from ..utils.part_files import atomic_output
from .edge_polygons import mask_to_edge_polygons, rasterize_rings
from .review_export import review_fields
from .review_export import group_annotations

__all__ = ["TAG_NAMES", "labeling_config", "mask_to_rle", "rle_to_mask", "brush_region", "polygon_regions",
           "keypoint_region", "object_regions", "region_to_mask", "prediction", "task_objects",
           "export_labelstudio"]

logger = logging.getLogger(__name__)

# tag names of the labeling config (from_name of each region type; to_name is "image")
TAG_NAMES = {"image": "image", "brushlabels": "tag", "polygonlabels": "poly", "keypointlabels": "kp"}
MODEL_VERSION = "wssis-d2"
LOCAL_FILES = "/data/local-files/?d="  # Label Studio's URL of a file under its local-files document root


def _brush():
    """``label_studio_sdk.converter.brush``, imported on first use (the optional extra ``labelstudio``)."""
    try:
        # the converter package prints the name of a missing optional module of its COCO/YOLO converter
        # on import; brush needs numpy only, so that line is kept out of our output
        with contextlib.redirect_stdout(io.StringIO()):
            from label_studio_sdk.converter import brush
    except ImportError as e:
        raise ImportError("Label Studio brush masks need the Label Studio SDK: pip install --no-deps "
                          "label-studio-sdk (its own pins of Pillow / OpenCV would replace detectron2's; its "
                          f"RLE code needs numpy only), or pip install 'wssis-d2[labelstudio]' ({e})") from e
    return brush


def labeling_config(labels: Sequence[str], *, polygons: bool = False, smart: bool = False) -> str:
    """The labeling config (XML) the regions of this module fit: an Image, BrushLabels (or PolygonLabels
    with ``polygons``) and KeyPointLabels, each with ``labels`` (category names) in order; ``smart``: smart
    keypoints (each one sent to an interactive ML backend, ``python -m wssis_d2.serve``).

    Paste it in Label Studio under Settings > Labeling Interface > Code."""
    def tag(kind, name, extra=""):
        items = "".join(f'\n    <Label value="{_xml(label)}"/>' for label in labels)
        return f'  <{kind} name="{name}" toName="{TAG_NAMES["image"]}"{extra}>{items}\n  </{kind}>\n'

    mask_tag = ("PolygonLabels", TAG_NAMES["polygonlabels"]) if polygons else ("BrushLabels", TAG_NAMES["brushlabels"])
    return (f'<View>\n  <Image name="{TAG_NAMES["image"]}" value="$image" zoom="true"/>\n'
            + tag(*mask_tag) + tag("KeyPointLabels", TAG_NAMES["keypointlabels"], f' smart="{str(smart).lower()}"')
            + "</View>\n")


def _xml(text: str) -> str:
    return str(text).replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")


def mask_to_rle(mask: np.ndarray) -> List[int]:
    """(H, W) bool mask -> Label Studio brush RLE (list of byte values), by the SDK's ``mask2rle``."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask_to_rle takes an (H, W) mask, got shape {mask.shape}")
    return [int(v) for v in _brush().mask2rle(mask.astype(bool).astype(np.uint8) * 255)]


def rle_to_mask(rle: Sequence[int], height: int, width: int) -> np.ndarray:
    """Label Studio brush RLE -> (H, W) bool mask (the SDK's ``decode_rle``, alpha channel > 0); a stream
    whose length header is not H * W * 4 is an error naming both sizes."""
    flat = _brush().decode_rle(list(rle))
    if flat.size != height * width * 4:
        raise ValueError(f"brush RLE holds {flat.size} values, not {height} x {width} x 4 = {height * width * 4}")
    return flat.reshape(height, width, 4)[:, :, 3] > 0


def _region(kind: str, region_id: str, height: int, width: int, value: dict, score: Optional[float]) -> dict:
    r = {"id": str(region_id), "type": kind, "from_name": TAG_NAMES[kind], "to_name": TAG_NAMES["image"],
         "original_width": int(width), "original_height": int(height), "image_rotation": 0, "value": value}
    if score is not None:
        r["score"] = float(score)
    return r


def brush_region(mask: np.ndarray, label: str, *, region_id: str, score: Optional[float] = None) -> dict:
    """One brush region of an (H, W) bool mask (holes and several parts kept)."""
    h, w = np.shape(mask)
    return _region("brushlabels", region_id, h, w,
                   {"format": "rle", "rle": mask_to_rle(mask), "brushlabels": [label]}, score)


def polygon_regions(mask: np.ndarray, label: str, *, region_id: str, score: Optional[float] = None,
                    counts: Optional[Counter] = None) -> List[dict]:
    """Polygon regions of an (H, W) bool mask: one per 4-connected part (ids ``<region_id>``,
    ``<region_id>_2``, ...), vertices at pixel corners in percent, holes filled (Label Studio polygons
    have none): ``counts`` gets ``"holes filled (polygons)"`` and ``"masks as several polygons"``."""
    h, w = np.shape(mask)
    parts = mask_to_edge_polygons(mask)
    if counts is not None:
        counts["holes filled (polygons)"] += sum(len(holes) for _, holes in parts)
        counts["masks as several polygons"] += len(parts) > 1
    scale = np.array([100.0 / w, 100.0 / h])
    return [_region("polygonlabels", region_id if k == 0 else f"{region_id}_{k + 1}", h, w,
                    {"points": [[round(float(x), 4), round(float(y), 4)] for x, y in exterior[:-1] * scale],
                     "polygonlabels": [label], "closed": True}, score)
            for k, (exterior, _) in enumerate(parts)]


def keypoint_region(x: float, y: float, label: str, height: int, width: int, *, region_id: str,
                    score: Optional[float] = None) -> dict:
    """A keypoint region at the click (x, y) in continuous pixel coordinates (pixel (i, j) centre =
    (j + 0.5, i + 0.5))."""
    return _region("keypointlabels", region_id, height, width,
                   {"x": 100.0 * float(x) / width, "y": 100.0 * float(y) / height, "width": 1,
                    "keypointlabels": [label]}, score)


def object_regions(mask: Optional[np.ndarray], label: str, *, region_id: str, height: int, width: int,
                   click: Optional[Sequence[float]] = None, score: Optional[float] = None,
                   polygons: bool = False, counts: Optional[Counter] = None) -> List[dict]:
    """All regions of one object: its mask (a brush region, or polygon regions) and its click (a keypoint
    region, id ``<region_id>_click``). ``mask`` None or empty: the click alone (counted in ``counts``
    as "objects without a mask")."""
    regions = []
    if mask is not None and np.any(mask):
        regions += (polygon_regions(mask, label, region_id=region_id, score=score, counts=counts) if polygons
                    else [brush_region(mask, label, region_id=region_id, score=score)])
    elif counts is not None:
        counts["objects without a mask"] += 1
    if click is not None:
        regions.append(keypoint_region(click[0], click[1], label, height, width, region_id=f"{region_id}_click",
                                       score=score))
    return regions


def region_to_mask(region: dict) -> np.ndarray:
    """(H, W) bool mask of a brush or polygon region (``original_height`` x ``original_width``); polygon
    vertices are rounded to pixel corners and filled by the even-odd rule."""
    h, w = int(region["original_height"]), int(region["original_width"])
    value = region["value"]
    if region["type"] == "brushlabels":
        return rle_to_mask(value["rle"], h, w)
    if region["type"] == "polygonlabels":
        pts = np.asarray(value["points"], np.float64) * [w / 100.0, h / 100.0]
        return rasterize_rings([pts], h, w)
    raise ValueError(f"region {region.get('id')!r} of type {region['type']!r} has no mask")


def prediction(regions: List[dict], *, score: Optional[float] = None, model_version: str = MODEL_VERSION) -> dict:
    """A Label Studio prediction holding ``regions``; ``score`` defaults to the mean of the regions'."""
    scores = [r["score"] for r in regions if "score" in r]
    if score is None:
        score = float(np.mean(scores)) if scores else 1.0
    return {"model_version": model_version, "score": float(score), "result": regions}


def task_objects(task: dict, key: str = "predictions") -> List[dict]:
    """The objects of a task's first prediction (``key="annotations"``: first annotation): one dict per
    mask region, ``{"id", "label", "mask" (H, W) bool, "score" or None}``; the regions of several polygon
    parts of one object (ids ``<id>``, ``<id>_2``, ...) are joined. Keypoints are left out."""
    entries = task.get(key) or []
    out: Dict[str, dict] = {}
    for r in (entries[0].get("result") or []) if entries else []:
        if r.get("type") not in ("brushlabels", "polygonlabels"):
            continue
        base, _, part = str(r["id"]).rpartition("_")
        if not (r["type"] == "polygonlabels" and part.isdigit() and base in out):
            base = str(r["id"])
        mask = region_to_mask(r)
        if base in out:
            out[base]["mask"] |= mask
        else:
            out[base] = {"id": base, "label": r["value"][r["type"]][0], "mask": mask, "score": r.get("score")}
    return list(out.values())


def _image_url(file_name: str, url_prefix: str) -> str:
    return url_prefix + file_name.replace(os.sep, "/")


def export_labelstudio(coco: dict, output_dir: str, image_root: Optional[str] = None, *, polygons: bool = False,
                       url_prefix: str = LOCAL_FILES) -> Counter:
    """Write ``output_dir/tasks.json`` (one task per image, its objects as one prediction) and
    ``output_dir/labeling_config.xml``.

    Args:
        coco: COCO dict (``labels.json``, ``predictions.json``): annotations with a mask (any COCO
            segmentation) and / or a click (``point`` or ``point_coords``), optional ``score``.
        output_dir: output folder.
        image_root: unused (images are referred to by URL), kept for the common writer signature.
        polygons: polygon regions instead of brush regions.
        url_prefix: ``data.image`` = url_prefix + ``file_name``; the default is Label Studio's local-files
            URL (serve the image root as its document root, docs/DATA.md).

    Returns:
        counts: images, objects, regions by type, and what changed (holes filled, several polygons,
        objects without a mask).
    """
    cats, by_image = group_annotations(coco)
    counts, tasks = Counter(), []
    for img in coco["images"]:
        h, w = int(img["height"]), int(img["width"])
        regions = []
        for ann in by_image[img["id"]]:
            segm = ann.get("segmentation")
            mask = decode_segmentation(segm, h, w) if segm not in (None, []) else None
            new = object_regions(mask, cats.get(ann["category_id"], str(ann["category_id"])),
                                 region_id=str(ann["id"]), height=h, width=w, click=annotation_point(ann),
                                 score=ann.get("score"), polygons=polygons, counts=counts)
            flags, risk = review_fields(ann)
            if flags or risk:  # the review's flags and risk (or a fallback), shown as the region's meta text
                note = "review: " + (", ".join(flags) or "-") + (f" (risk {risk})" if risk else "")
                for r in new:
                    r["meta"] = {"text": [note]}
            regions += new
            counts["objects"] += 1
        for r in regions:
            counts[f"{r['type']} regions"] += 1
        tasks.append({"data": {"image": _image_url(img["file_name"], url_prefix)},
                      "predictions": [prediction(regions)]})
        counts["images"] += 1
    os.makedirs(output_dir, exist_ok=True)
    write_json_atomic(tasks, os.path.join(output_dir, "tasks.json"))
    config = labeling_config([c["name"] for c in coco["categories"]], polygons=polygons)
    with atomic_output(os.path.join(output_dir, "labeling_config.xml")) as f:
        f.write(config)
    logger.info(f"Label Studio tasks in {output_dir}/tasks.json, labeling config in labeling_config.xml: "
                f"{dict(counts)}")
    return counts
