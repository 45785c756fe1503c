"""What every point importer shares: the format registry, the checks, the point-label json.

A format reader turns a labeling tool's export into a list of **image entries**::

    {"file_name": str,            # path of the image relative to the image root ("/" separated)
     "width": int or None,        # from the export; None: read from the image file's header
     "height": int or None,
     "where": str,                # the export file (and element) the entry came from, for messages
     "clicks": [(x, y, label, where), ...]}   # continuous pixel coordinates, (0, 0) = top-left corner

plus a dict of counts of what it ignored (e.g. other shape types). :func:`build_point_json` checks the
entries and writes the point-label json of docs/DATA.md. Bad input raises :class:`PointImportError`,
one line naming the file, the image / element and what is wrong.
"""
import logging
import os
import re
from collections import Counter
from typing import Callable, Dict, List, Optional, Tuple

from PIL import Image

from ...data.json_io import load_json, write_json_atomic
from ...utils.errors import WSSISInputError

__all__ = ["POINT_FORMATS", "PointImportError", "register_format", "build_point_json", "read_points",
           "import_points", "ImageIndex", "read_image_size", "UPLOAD_PREFIX"]

logger = logging.getLogger(__name__)

TOOL = "wssis_d2.formats.importers (datasets/import_points.py)"
# Format name -> reader(path, image_root) -> (entries, ignored counts).
POINT_FORMATS: Dict[str, Callable] = {}
# Label Studio stores uploads as "<8 hex digits>-<original name>".
UPLOAD_PREFIX = re.compile(r"^[0-9a-fA-F]{8}-")


class PointImportError(WSSISInputError):
    """Bad input to a point importer (the message names the file, image / element and the problem)."""


def register_format(name: str):
    """Decorator: register a reader under the format ``name`` (the ``--format`` value)."""
    def deco(fn):
        if name in POINT_FORMATS:
            raise KeyError(f"Point format {name!r} is already registered")
        POINT_FORMATS[name] = fn
        return fn
    return deco


def read_image_size(path: str) -> Tuple[int, int]:
    """(height, width) from the image file's header (PIL opens lazily: no pixel is decoded)."""
    try:
        with Image.open(path) as im:
            width, height = im.size
    except (OSError, ValueError) as e:
        raise PointImportError(f"{path}: cannot read the image size ({e})") from e
    return int(height), int(width)


class ImageIndex:
    """The image files under a root, to match an export's image by file name (Label Studio keeps only
    the uploaded name)."""

    EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

    def __init__(self, image_root: str):
        self.image_root = image_root
        self._by_name: Dict[str, List[str]] = {}
        for dirpath, _, files in os.walk(image_root):
            for f in files:
                if f.lower().endswith(self.EXTENSIONS):
                    rel = os.path.relpath(os.path.join(dirpath, f), image_root).replace(os.sep, "/")
                    self._by_name.setdefault(f, []).append(rel)

    def find(self, name: str, where: str) -> str:
        """The relative path of the one image called ``name`` (or ``name`` without Label Studio's
        ``<8 hex>-`` upload prefix)."""
        candidates = [name] + ([UPLOAD_PREFIX.sub("", name, count=1)] if UPLOAD_PREFIX.match(name) else [])
        for cand in candidates:
            found = self._by_name.get(cand, [])
            if len(found) > 1:
                raise PointImportError(f"{where}: image {name!r} matches {len(found)} files under "
                                       f"{self.image_root}: {found[:3]}")
            if found:
                return found[0]
        raise PointImportError(f"{where}: no image file {' or '.join(map(repr, candidates))} under "
                               f"{self.image_root}")


def _category_lookup(categories: List[dict], source: str) -> Dict[str, int]:
    names = Counter(c["name"] for c in categories)
    dup = [n for n, k in names.items() if k > 1]
    if dup:
        raise PointImportError(f"{source}: category names {dup} appear more than once; clicks are matched by name")
    return {c["name"]: int(c["id"]) for c in categories}


def build_point_json(entries: List[dict], categories: List[dict], image_root: str, *,
                     reserved_images: Optional[List[dict]] = None, skip_unknown: bool = False,
                     info: Optional[dict] = None, categories_source: str = "categories") -> dict:
    """The point-label json of ``entries`` (module docstring), checked.

    Args:
        entries: image entries of a format reader.
        categories: COCO categories (``id``, ``name``); a click's label must be one of the names.
        image_root: the images' root (every entry's file must exist under it).
        reserved_images: images of the fully-labeled file: new image ids start after their largest id
            and an image that is in it too is an error.
        skip_unknown: count clicks with an unknown label instead of raising.
        info: extra ``info`` fields.

    Returns:
        dict with ``images`` (id 1.. after the reserved ids, sorted by file name), ``categories``,
        ``annotations`` (id 1.., one per click, ``point_coords`` [[x, y]], ``point_labels`` [1]) and
        ``info`` (the counts).
    """
    lookup = _category_lookup(categories, categories_source)
    reserved = {img["file_name"].replace(os.sep, "/"): img["id"] for img in reserved_images or []}
    first_id = max([int(i) for i in reserved.values()], default=0) + 1
    seen: Dict[str, str] = {}
    for e in entries:
        name = os.path.normpath(e["file_name"]).replace(os.sep, "/")
        if name.startswith("../") or os.path.isabs(name):
            raise PointImportError(f"{e['where']}: image {e['file_name']!r} is not under the image root {image_root}")
        if name in seen:
            raise PointImportError(f"{e['where']}: image {name!r} has a second entry (the first in {seen[name]})")
        if name in reserved:
            raise PointImportError(f"{e['where']}: image {name!r} is also in the fully-labeled file "
                                   f"{categories_source} (image id {reserved[name]})")
        seen[name] = e["where"]
        e["file_name"] = name
    images, annotations, unknown = [], [], Counter()
    for image_id, e in enumerate(sorted(entries, key=lambda e: e["file_name"]), start=first_id):
        path = os.path.join(image_root, e["file_name"])
        if not os.path.isfile(path):
            raise PointImportError(f"{e['where']}: image file {path} does not exist")
        h, w = e.get("height"), e.get("width")
        if not h or not w:
            h, w = read_image_size(path)
        h, w = int(h), int(w)
        images.append({"id": image_id, "file_name": e["file_name"], "height": h, "width": w})
        for x, y, label, where in e["clicks"]:
            if label not in lookup:
                if skip_unknown:
                    unknown[label] += 1
                    continue
                raise PointImportError(f"{where}: unknown label {label!r}; known: {sorted(lookup)} "
                                       "(--skip-unknown to skip such clicks)")
            x, y = float(x), float(y)
            if not (0 <= x <= w and 0 <= y <= h):  # the image spans [0, W] x [0, H] (data/validation.py)
                raise PointImportError(f"{where}: click ({x:g}, {y:g}) is outside its image "
                                       f"{e['file_name']!r} ({w} x {h}: 0 <= x <= {w}, 0 <= y <= {h})")
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": lookup[label],
                                "point_coords": [[round(x, 3), round(y, 3)]], "point_labels": [1], "iscrowd": 0})
    counts = {"num_images": len(images), "num_clicks": len(annotations),
              "num_images_without_clicks": len(images) - len({a["image_id"] for a in annotations}),
              "num_unknown_label_skipped": sum(unknown.values()), "unknown_labels": dict(unknown)}
    if unknown:
        logger.warning(f"Skipped {sum(unknown.values())} clicks with unknown labels: {dict(unknown)}")
    return {"info": dict(info or {}, tool=TOOL, image_root=os.path.abspath(image_root),
                         point_convention="continuous pixel coordinates, (0, 0) = the image's top-left corner",
                         **counts),
            "images": images, "categories": [dict(c) for c in categories], "annotations": annotations}


def read_points(fmt: str, input_path: str, image_root: str, categories: List[dict], *,
                reserved_images: Optional[List[dict]] = None, skip_unknown: bool = False,
                categories_source: str = "categories") -> dict:
    """Read ``input_path`` in format ``fmt`` (``POINT_FORMATS``) into the point-label json (a dict, checked
    by :func:`build_point_json`) with the COCO ``categories``; a click's label is a category name."""
    if fmt not in POINT_FORMATS:
        raise PointImportError(f"unknown format {fmt!r}; choose from {sorted(POINT_FORMATS)}")
    if not os.path.exists(input_path):
        raise PointImportError(f"{input_path} does not exist")
    if not os.path.isdir(image_root):
        raise PointImportError(f"image root {image_root} is not a directory")
    entries, ignored = POINT_FORMATS[fmt](input_path, image_root)
    for what, n in ignored.items():
        if n:
            logger.info(f"{input_path}: ignored {n} {what}")
    return build_point_json(entries, categories, image_root, reserved_images=reserved_images,
                            skip_unknown=skip_unknown, categories_source=categories_source,
                            info={"format": fmt, "source": os.path.abspath(input_path), "ignored": ignored})


def import_points(fmt: str, input_path: str, image_root: str, categories_json: str, output: str, *,
                  skip_unknown: bool = False) -> dict:
    """Read ``input_path`` in format ``fmt`` (``POINT_FORMATS``), write the point-label json ``output``
    (atomically) with the categories of ``categories_json`` and return its ``info``."""
    try:
        ref = load_json(categories_json)
    except (FileNotFoundError, ValueError) as e:
        raise PointImportError(str(e)) from e
    if not isinstance(ref.get("categories"), list) or not ref["categories"]:
        raise PointImportError(f"{categories_json}: no 'categories' list")
    out = read_points(fmt, input_path, image_root, ref["categories"], reserved_images=ref.get("images") or [],
                      skip_unknown=skip_unknown, categories_source=categories_json)
    out["info"]["categories_from"] = os.path.abspath(categories_json)
    write_json_atomic(out, output)
    i = out["info"]
    logger.info(f"Wrote {output}: {i['num_images']} images ({i['num_images_without_clicks']} without clicks), "
                f"{i['num_clicks']} clicks from {fmt} export {input_path}")
    return i
