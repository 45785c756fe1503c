"""QuPath GeoJSON objects <-> masks (``--format qupath``): one file per image, imported in QuPath by drag and
drop or File > Object data > Import objects.

Written per image: ``<output>/<file_name stem>.geojson``, a FeatureCollection with one Feature per object
that has a mask::

    {"type": "Feature", "id": uuid, "geometry": Polygon | MultiPolygon,
     "properties": {"objectType": "detection" | "annotation", "name": category,
                    "classification": {"name": category, "color": [r, g, b]},
                    "measurements": {"score": s, "click_x": x, "click_y": y}}}

Geometry: traced along pixel **edges** (:mod:`.edge_polygons`), in full-resolution pixels with (0, 0) at the
image's top-left corner, y down (QuPath's convention): a Polygon per object, holes as interior rings, a
MultiPolygon only for a mask of several parts (4-connected). Rings are closed (last == first vertex).
``measurements`` holds numbers only: ``score`` when the annotation has one, ``click_x`` / ``click_y``
(continuous pixel coordinates, pixel centre = index + 0.5) when it has a click. ``id`` is a UUID derived
from the image name and the annotation id (the same export gives the same ids). Detections (default) are
light and read-only in QuPath; ``object_type="annotation"`` gives editable shapes (sluggish beyond some
tens of thousands). Annotations without a mask are counted and left out.
"""
import json
import logging
import os
import uuid
from collections import Counter
from typing import List, Optional

import numpy as np

from ..data.coco_masks import decode_segmentation
from ..data.json_io import write_json_atomic
from ..data.point_utils import annotation_point
from .edge_polygons import mask_to_edge_polygons, rasterize_rings

__all__ = ["OBJECT_TYPES", "mask_geometry", "geometry_rings", "feature", "export_qupath", "read_qupath"]

logger = logging.getLogger(__name__)

OBJECT_TYPES = ("detection", "annotation")
# category colours (cycled): distinct, readable on bright-field and fluorescence images
PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40)]


def mask_geometry(mask: np.ndarray) -> Optional[dict]:
    """GeoJSON geometry of an (H, W) bool mask (module docstring); None for an empty mask."""
    parts = mask_to_edge_polygons(mask)
    polygons = [[ring.tolist() for ring in [exterior] + holes] for exterior, holes in parts]
    if not polygons:
        return None
    if len(polygons) == 1:
        return {"type": "Polygon", "coordinates": polygons[0]}
    return {"type": "MultiPolygon", "coordinates": polygons}


def geometry_rings(geometry: dict) -> List[np.ndarray]:
    """Every ring (exteriors and holes) of a Polygon / MultiPolygon as (K, 2) arrays."""
    if geometry["type"] == "Polygon":
        polygons = [geometry["coordinates"]]
    elif geometry["type"] == "MultiPolygon":
        polygons = geometry["coordinates"]
    else:
        raise ValueError(f"geometry type {geometry['type']!r} has no area (Polygon or MultiPolygon expected)")
    return [np.asarray(ring, np.float64) for polygon in polygons for ring in polygon]


def feature(mask: np.ndarray, category: str, color, *, object_type: str = "detection", feature_id: str,
            score: Optional[float] = None, click=None) -> Optional[dict]:
    """One QuPath Feature of an object (module docstring); None for an empty mask."""
    geometry = mask_geometry(mask)
    if geometry is None:
        return None
    measurements = {}
    if score is not None:
        measurements["score"] = float(score)
    if click is not None:
        measurements["click_x"], measurements["click_y"] = float(click[0]), float(click[1])
    return {"type": "Feature", "id": feature_id, "geometry": geometry,
            "properties": {"objectType": object_type, "name": category,
                           "classification": {"name": category, "color": [int(c) for c in color]},
                           "measurements": measurements}}


def export_qupath(coco: dict, output_dir: str, image_root: Optional[str] = None, *,
                  object_type: str = "detection") -> Counter:
    """One GeoJSON per image of ``coco`` into ``output_dir`` (module docstring). Returns the counts."""
    if object_type not in OBJECT_TYPES:
        raise ValueError(f"unknown QuPath object type {object_type!r}; choose from {list(OBJECT_TYPES)}")
    cats = {c["id"]: c["name"] for c in coco["categories"]}
    colors = {c["id"]: PALETTE[k % len(PALETTE)] for k, c in enumerate(coco["categories"])}
    by_image = {img["id"]: [] for img in coco["images"]}
    for a in coco["annotations"]:
        by_image[a["image_id"]].append(a)
    counts = Counter()
    for img in coco["images"]:
        h, w = int(img["height"]), int(img["width"])
        features = []
        for a in by_image[img["id"]]:
            segm = a.get("segmentation")
            mask = decode_segmentation(segm, h, w) if segm not in (None, []) else np.zeros((h, w), bool)
            f = feature(mask, cats.get(a["category_id"], str(a["category_id"])), colors.get(a["category_id"], (0, 0, 0)),
                        object_type=object_type, score=a.get("score"), click=annotation_point(a),
                        feature_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"wssis-d2/{img['file_name']}/{a['id']}")))
            if f is None:
                counts["annotations without a mask (left out)"] += 1
                continue
            counts["MultiPolygons (several parts)"] += f["geometry"]["type"] == "MultiPolygon"
            counts["holes"] += sum(len(p) - 1 for p in ([f["geometry"]["coordinates"]] if f["geometry"]["type"]
                                                         == "Polygon" else f["geometry"]["coordinates"]))
            features.append(f)
        write_json_atomic({"type": "FeatureCollection", "features": features},
                          os.path.join(output_dir, os.path.splitext(img["file_name"])[0] + ".geojson"))
        counts["images"] += 1
        counts["objects"] += len(features)
    logger.info(f"QuPath GeoJSON ({object_type}s) in {output_dir}: {dict(counts)}")
    return counts


def read_qupath(path: str, height: int, width: int) -> List[dict]:
    """Read a QuPath GeoJSON (a FeatureCollection or a list of Features) back into masks: one dict per
    Polygon / MultiPolygon feature, ``{"id", "name" (classification name), "mask" (H, W) bool,
    "measurements", "objectType"}``, rasterised by the even-odd rule on pixel-edge coordinates."""
    with open(path) as f:
        data = json.load(f)
    features = data["features"] if isinstance(data, dict) else data
    out = []
    for feat in features:
        if feat.get("geometry", {}).get("type") not in ("Polygon", "MultiPolygon"):
            continue
        props = feat.get("properties") or {}
        cls = props.get("classification")
        out.append({"id": feat.get("id"), "name": cls.get("name") if isinstance(cls, dict) else cls,
                    "mask": rasterize_rings(geometry_rings(feat["geometry"]), height, width),
                    "measurements": props.get("measurements") or {}, "objectType": props.get("objectType")})
    return out
