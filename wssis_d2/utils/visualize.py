"""Overlays of point labels and (pseudo-)masks on their images, drawn with detectron2's ``Visualizer``.

Used by ``tools/visualize.py`` (any registered dataset or COCO / pseudo-label json) and ``tools/demo.py``.
Each instance is drawn in its own colour: the mask (if any) with its class label (and score when it is
not 1), and its point (if any) as a dot with a dark rim. Points are in continuous pixel coordinates of
the original image (docs/DATA.md), which is what the ``Visualizer`` draws in.
"""
import logging
import os
from typing import List, Mapping, Optional, Sequence

import numpy as np

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils.colormap import colormap
from detectron2.utils.visualizer import Visualizer

from ..data.coco_masks import decode_segmentation
from ..data.images import read_image
from ..data.point_utils import annotation_point
from ..data.validation import load_coco
from .errors import WSSISInputError

__all__ = ["draw_instances", "instances_of_annotations", "render_records", "render_coco_json", "render_dataset"]

logger = logging.getLogger(__name__)

_COLORS = colormap(rgb=True, maximum=1)


def instances_of_annotations(annotations, height: int, width: int, class_name) -> List[dict]:
    """Drawable instances ({"label", "mask" (H, W) bool or None, "point" (x, y) or None}) of COCO-style
    annotations; ``class_name(category_id) -> str``."""
    out = []
    for ann in annotations:
        mask = None
        if ann.get("segmentation") is not None:
            mask = decode_segmentation(ann["segmentation"], height, width)
        label = class_name(ann["category_id"])
        score = ann.get("score")
        if score is not None and score != 1:
            label += f" {score:.2f}"
        out.append({"label": label, "mask": mask, "point": annotation_point(ann)})
    return out


def draw_instances(image: np.ndarray, instances: Sequence[Mapping], scale: float = 1.0) -> np.ndarray:
    """Draw ``instances`` (see ``instances_of_annotations``) on an (H, W, 3) RGB uint8 image.

    Returns:
        (H', W', 3) RGB uint8 image, H' = H * scale.
    """
    h, w = image.shape[:2]
    vis = Visualizer(image, None, scale=scale)
    colors = [tuple(_COLORS[k % len(_COLORS)]) for k in range(len(instances))]
    with_mask = [k for k, inst in enumerate(instances) if inst.get("mask") is not None and inst["mask"].any()]
    if with_mask:
        vis.overlay_instances(masks=[instances[k]["mask"] for k in with_mask],
                              labels=[instances[k]["label"] for k in with_mask],
                              assigned_colors=[colors[k] for k in with_mask], alpha=0.4)
    image_radius = max(1.5, 0.012 * max(h, w))
    for k, inst in enumerate(instances):
        if inst.get("point") is None:
            continue
        x, y = float(inst["point"][0]), float(inst["point"][1])
        # A dot never hides its own mask: at most a fifth of the mask's size (small cells in large images).
        radius = image_radius if k not in with_mask else max(
            1.5, min(image_radius, 0.2 * float(np.sqrt(instances[k]["mask"].sum()))))
        vis.draw_circle((x, y), color=(0.05, 0.05, 0.05), radius=radius * 1.5)
        vis.draw_circle((x, y), color=colors[k], radius=radius)
        if k not in with_mask:  # a point label: name it next to its point
            vis.draw_text(instances[k]["label"], (x, y - 2.5 * radius), color=colors[k])
    return vis.get_output().get_image()


def _auto_scale(height, width, scale):
    return scale if scale > 0 else max(1.0, 512.0 / max(height, width))


def _save(image: np.ndarray, path: str) -> str:
    import cv2

    tmp = path + ".tmp.png"
    cv2.imwrite(tmp, image[:, :, ::-1])
    os.replace(tmp, path)
    return path


def render_records(records: Sequence[Mapping], class_name, output_dir: str, max_images: int = 8,
                   scale: float = 0.0, skip_bad_images: bool = False) -> List[str]:
    """Draw the first ``max_images`` records ({"file_name", "height", "width", "annotations"}) into
    ``output_dir/<name>.png``: the record's ``"overlay_name"`` if it has one, else the image file's stem, with
    ``_<image_id>`` added when an earlier record of this call took the name (``a/t1.tif`` and ``b/t1.tif``);
    ``scale`` 0 = enlarge small images to ~512 px. Returns the paths.

    An image that cannot be read raises ``WSSISInputError`` naming it and its id; with ``skip_bad_images`` it
    is skipped (warning, count at the end; the next image takes its place)."""
    os.makedirs(output_dir, exist_ok=True)
    paths, bad = [], 0
    for rec in records:
        if len(paths) >= max_images:
            break
        try:
            image = read_image(rec["file_name"], "RGB", rec.get("image_id"))
        except WSSISInputError as e:
            if not skip_bad_images:
                raise
            bad += 1
            logger.warning(f"skipped: {e}")
            continue
        h, w = image.shape[:2]
        insts = instances_of_annotations(rec.get("annotations", []), h, w, class_name)
        drawn = draw_instances(image, insts, scale=_auto_scale(h, w, scale))
        name = rec.get("overlay_name") or os.path.splitext(os.path.basename(rec["file_name"]))[0]
        path = os.path.join(output_dir, f"{name}.png")
        if path in paths:
            path = os.path.join(output_dir, f"{name}_{rec.get('image_id', len(paths))}.png")
        paths.append(_save(drawn, path))
    if bad:
        logger.warning(f"skipped {bad} images that cannot be read")
    return paths


def render_coco_json(json_file: str, output_dir: str, image_root: Optional[str] = None, max_images: int = 8,
                     scale: float = 0.0, only_annotated: bool = True, skip_bad_images: bool = False) -> List[str]:
    """Draw a COCO json: GT (masks), a points file (points) or a pseudo-label json (masks + points).

    Args:
        image_root: default: the json's ``info["image_root"]``.
        only_annotated: skip images without annotations.
        skip_bad_images: see :func:`render_records`.
    """
    coco = load_coco(json_file, "pseudo")
    image_root = image_root or (coco.get("info") or {}).get("image_root") or ""
    names = {c["id"]: c.get("name", str(c["id"])) for c in coco.get("categories", [])}
    by_image = {}
    for ann in coco["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    records = []
    for img in coco["images"]:
        anns = by_image.get(img["id"], [])
        if only_annotated and not anns:
            continue
        records.append({"file_name": os.path.join(image_root, img["file_name"]), "image_id": img["id"],
                        "height": img["height"],
                        "width": img["width"], "annotations": anns})
    return render_records(records, lambda c: names.get(c, str(c)), output_dir, max_images, scale, skip_bad_images)


def render_dataset(name: str, output_dir: str, max_images: int = 8, scale: float = 0.0,
                   skip_bad_images: bool = False) -> List[str]:
    """Draw a registered dataset (dataset dicts: contiguous ``category_id``, masks and / or points)."""
    records = DatasetCatalog.get(name)
    classes = MetadataCatalog.get(name).get("thing_classes", None) or []
    return render_records(records, lambda c: classes[c] if c < len(classes) else str(c), output_dir, max_images,
                          scale, skip_bad_images)
