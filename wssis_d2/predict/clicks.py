"""Clicks for ``tools/predict.py``: a ``--points`` string or a labeling tool's export -> a point-label json.

Every input becomes the point-label json of docs/DATA.md (a dict), built by the point importers
(:mod:`wssis_d2.formats.importers`), so that clicks are checked and numbered as ``datasets/import_points.py``
does them: a click's label is a **category name**, a click outside its image is an error.

Categories: the model config has no names, only ``MODEL.SOLOV2.NUM_CLASSES``. With ``--categories`` (a
COCO json, normally the training labels) its categories are used: labels are their names, the output
json carries their ids. Without it the categories are the model's contiguous class indices, named by
themselves: ``{"id": i, "name": "i"}`` for i in 0..NUM_CLASSES-1, so a label is a class index. Either way
the class index of a category is its rank by id (:func:`wssis_d2.data.categories.contiguous_category_map`),
which must cover the model's classes exactly.
"""
import os
from typing import List, Optional

from ..formats.importers import POINT_FORMATS, build_point_json, read_points
from ..data.json_io import load_json
from ..data.validation import check_coco, load_coco
from ..utils.errors import WSSISInputError

__all__ = ["CLICK_FORMATS", "POINTS_JSON", "default_categories", "load_categories", "check_categories",
           "parse_points", "single_image_points", "export_points"]

POINTS_JSON = "points-json"  # the project's own point-label json (docs/DATA.md)
CLICK_FORMATS = tuple(sorted(POINT_FORMATS)) + (POINTS_JSON,)


def default_categories(num_classes: int) -> List[dict]:
    """The model's classes as categories: ``{"id": i, "name": str(i)}``, i = 0..num_classes-1."""
    return [{"id": i, "name": str(i)} for i in range(int(num_classes))]


def check_categories(categories: List[dict], num_classes: int, source: str) -> List[dict]:
    """``categories`` when there is one per model class, else :class:`WSSISInputError` naming ``source``."""
    if len(categories) != num_classes:
        raise WSSISInputError(f"{source} has {len(categories)} categories, the model has {num_classes} classes "
                              "(MODEL.SOLOV2.NUM_CLASSES): give the categories of the data it was trained on")
    return categories


def load_categories(path: Optional[str], num_classes: int) -> List[dict]:
    """The categories of the COCO json ``path`` (checked: ids, names, one per model class), or
    :func:`default_categories` when ``path`` is None."""
    if path is None:
        return default_categories(num_classes)
    coco = load_json(path)
    if not isinstance(coco, dict) or not isinstance(coco.get("categories"), list) or not coco["categories"]:
        raise WSSISInputError(f"{path}: no 'categories' list")
    check_coco({"images": [], "annotations": [], "categories": coco["categories"]}, path, "instances")
    return check_categories([dict(c) for c in coco["categories"]], num_classes, path)


def parse_points(text: str) -> List[tuple]:
    """``"x,y,label;x,y,label;..."`` -> [(x, y, label), ...] (x, y float, label a stripped string)."""
    clicks = []
    for k, item in enumerate(t for t in text.split(";") if t.strip()):
        parts = [p.strip() for p in item.split(",", 2)]
        try:
            if len(parts) != 3 or not parts[2]:
                raise ValueError
            clicks.append((float(parts[0]), float(parts[1]), parts[2]))
        except ValueError:
            raise WSSISInputError(f"--points: click {k} {item.strip()!r} is not 'x,y,label' (e.g. "
                                  "--points \"120.5,80,car;30,42.5,person\")") from None
    if not clicks:
        raise WSSISInputError(f"--points {text!r}: no click (expected 'x,y,label;x,y,label;...')")
    return clicks


def single_image_points(image: str, text: str, categories_json: Optional[str], num_classes: int, *,
                        skip_unknown: bool = False) -> dict:
    """The point-label json of one image file and its ``--points`` clicks (image root: its folder), with
    the categories of :func:`load_categories`."""
    categories = load_categories(categories_json, num_classes)
    if not os.path.isfile(image):
        raise WSSISInputError(f"--image {image}: no such file")
    entry = {"file_name": os.path.basename(image), "width": None, "height": None, "where": f"--image {image}",
             "clicks": [(x, y, label, f"--points click {k} ({x:g}, {y:g}, {label!r})")
                        for k, (x, y, label) in enumerate(parse_points(text))]}
    return build_point_json([entry], categories, os.path.dirname(os.path.abspath(image)),
                            skip_unknown=skip_unknown, categories_source=categories_json or "the model's class indices",
                            info={"format": "--points"})


def export_points(fmt: str, clicks: str, image_root: str, categories_json: Optional[str], num_classes: int, *,
                  skip_unknown: bool = False) -> dict:
    """The point-label json of a labeling tool's export ``clicks`` in ``fmt`` (``CLICK_FORMATS``) over the
    images under ``image_root``, with the categories of :func:`load_categories`. ``points-json`` is read
    as it is, with its own categories (``categories_json`` must then be None)."""
    if fmt == POINTS_JSON:
        if categories_json is not None:
            raise WSSISInputError(f"--format {POINTS_JSON}: the json has its own categories; leave out --categories")
        points = load_coco(clicks, "points")
        check_categories(points["categories"], num_classes, clicks)
        return points
    if fmt not in POINT_FORMATS:
        raise WSSISInputError(f"unknown click format {fmt!r}; choose from {list(CLICK_FORMATS)}")
    return read_points(fmt, clicks, image_root, load_categories(categories_json, num_classes),
                       skip_unknown=skip_unknown, categories_source=categories_json or "the model's class indices")
