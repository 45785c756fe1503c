"""Point importers: clicks exported by labeling tools -> the point-label json of docs/DATA.md.

Formats (``POINT_FORMATS``, one module each): ``labelme``, ``cvat``, ``labelstudio``,
``coco-keypoints``, ``csv``. ``import_points`` is what ``datasets/import_points.py`` runs.
"""
from . import coco_keypoints, csv_points, cvat, labelme, labelstudio  # noqa: F401  (register the formats)
from .core import POINT_FORMATS, PointImportError, build_point_json, import_points, read_points, register_format

__all__ = ["POINT_FORMATS", "PointImportError", "build_point_json", "import_points", "read_points",
           "register_format"]
