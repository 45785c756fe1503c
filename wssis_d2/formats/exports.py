"""The name -> writer table of every export, shared by ``tools/export_labels.py --format`` and
``tools/predict.py --export``, with their command-line options.

A writer is ``writer(coco: dict, output_dir: str, image_root: Optional[str], *, <options>) -> Counter``; its
keyword-only parameters are its options (one command-line flag each, :data:`OPTIONS`). Giving an option to
a format that does not take it is an error (never silently ignored).
"""
import argparse
import inspect
import logging
from typing import Optional

from ..data.validation import load_coco
from .ctc import export_ctc
from .flatten import OVERLAP_RULES
from .label_image_export import LAYOUTS, export_label_images
from .labelstudio import LOCAL_FILES, export_labelstudio
from .qupath import OBJECT_TYPES, export_qupath
from .review_export import export_cvat, export_labelme

__all__ = ["EXPORT_FORMATS", "OPTIONS", "add_export_arguments", "export_options", "export_coco", "export_labels"]

logger = logging.getLogger(__name__)

EXPORT_FORMATS = {
    "labelme": export_labelme,            # review: one labelme json per image (outer-contour polygons)
    "cvat": export_cvat,                  # review: CVAT for images 1.1 annotations.xml
    "label-images": export_label_images,  # Cellpose / StarDist / napari / Fiji label images + objects CSV
    "ctc": export_ctc,                    # Cell Tracking Challenge RES folder (maskTTT.tif + res_track.txt)
    "qupath": export_qupath,              # QuPath GeoJSON, one file per image
    "labelstudio": export_labelstudio,    # Label Studio task file (predictions) + labeling config
}
NEEDS_IMAGE_ROOT = ("labelme",)  # labelme files point at their image

# option name: (argparse flag, argparse keyword arguments)
OPTIONS = {
    "layout": ("--layout", dict(choices=LAYOUTS, help="label-images: cellpose (<stem>_masks.tif) or stardist "
                                                      "(masks/<image name>); default cellpose")),
    "png": ("--png", dict(action="store_true", help="label-images, cellpose layout: 16-bit PNG instead of TIFF")),
    "overlap": ("--overlap", dict(choices=OVERLAP_RULES, help="label-images, ctc: who keeps an overlapping "
                                                              "pixel: score (higher wins, default), area (smaller "
                                                              "wins), order (later annotation wins)")),
    "copy_images": ("--copy-images", dict(action="store_true", help="label-images: copy the images beside the masks "
                                                                    "(cellpose) or to images/ (stardist)")),
    "object_type": ("--object-type", dict(choices=OBJECT_TYPES, help="qupath: detection (default; read-only, "
                                                                     "light) or annotation (editable)")),
    "polygons": ("--polygons", dict(action="store_true", help="labelstudio: polygon regions instead of brush "
                                                              "masks (holes filled, counted)")),
    "url_prefix": ("--url-prefix", dict(help=f"labelstudio: image URL = prefix + file_name (default {LOCAL_FILES!r})")),
}


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every writer option (default None: the writer's own default) to ``parser``."""
    group = parser.add_argument_group("export options")
    for name, (flag, kwargs) in OPTIONS.items():
        group.add_argument(flag, dest=name, default=None, **kwargs)


def _writer_options(fmt):
    return [p.name for p in inspect.signature(EXPORT_FORMATS[fmt]).parameters.values()
            if p.kind == inspect.Parameter.KEYWORD_ONLY]


def export_options(args: argparse.Namespace, fmt: Optional[str]) -> dict:
    """The options given on the command line (``args``) for ``fmt``; an option that ``fmt`` does not take
    (or any option when ``fmt`` is None: no export) is a ValueError naming it and the formats that take it."""
    given = {name: getattr(args, name) for name in OPTIONS
             if getattr(args, name, None) not in (None, False)}
    if fmt is None:
        if given:
            raise ValueError(f"{', '.join(OPTIONS[n][0] for n in given)} given without an export format")
        return given
    takes = _writer_options(fmt)
    for name in given:
        if name not in takes:
            users = [f for f in EXPORT_FORMATS if name in _writer_options(f)]
            raise ValueError(f"{OPTIONS[name][0]} does not apply to --format/--export {fmt} (it is for: "
                             f"{', '.join(users)})")
    return given


def export_coco(coco: dict, fmt: str, output_dir: str, image_root: Optional[str] = None, **options) -> dict:
    """Write ``coco`` in ``fmt`` (:data:`EXPORT_FORMATS`) with the writer's ``options``; returns the counts."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {sorted(EXPORT_FORMATS)}")
    if fmt in NEEDS_IMAGE_ROOT and not image_root:
        raise ValueError(f"{fmt} needs the image root (--image-root, or info.image_root in the json)")
    return dict(EXPORT_FORMATS[fmt](coco, output_dir, image_root, **options))


def export_labels(json_file: str, fmt: str, output_dir: str, image_root: Optional[str] = None, **options) -> dict:
    """Export ``json_file`` (a COCO instances json: labels.json, predictions.json, a point-label json) in
    ``fmt`` to ``output_dir``; ``image_root`` defaults to the json's ``info["image_root"]``. Returns the counts."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {sorted(EXPORT_FORMATS)}")
    coco = load_coco(json_file, "pseudo")
    image_root = image_root or (coco.get("info") or {}).get("image_root")
    counts = export_coco(coco, fmt, output_dir, image_root, **options)
    logger.info(f"Exported {json_file} as {fmt} to {output_dir}: {counts}")
    return counts
