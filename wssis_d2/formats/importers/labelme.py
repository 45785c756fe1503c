"""labelme: a folder of labelme JSON files, one per image (https://github.com/wkentaro/labelme).

Each file: ``{"shapes": [{"label", "points": [[x, y]], "shape_type": "point", ...}, ...],
"imagePath": path relative to the json file (``\\`` read as ``/``), "imageHeight", "imageWidth", ...}``. Every ``point`` shape
is one click; other shape types are ignored (counted). labelme coordinates are continuous with (0, 0)
at the image's top-left corner, as in docs/DATA.md: no shift.
"""
import glob
import json
import os

from .core import PointImportError, register_format

__all__ = ["read_labelme"]


def _files(path):
    if os.path.isfile(path):
        return [path]
    files = sorted(glob.glob(os.path.join(path, "**", "*.json"), recursive=True))
    if not files:
        raise PointImportError(f"{path}: no labelme .json file in this folder")
    return files


@register_format("labelme")
def read_labelme(path, image_root):
    entries, other = [], 0
    root = os.path.abspath(image_root)
    for f in _files(path):
        try:
            with open(f) as fh:
                data = json.load(fh)
        except (OSError, json.JSONDecodeError) as e:
            raise PointImportError(f"{f}: malformed labelme file ({e})") from e
        if not isinstance(data, dict) or not isinstance(data.get("shapes"), list) or not data.get("imagePath"):
            raise PointImportError(f"{f}: malformed labelme file (needs 'shapes' and 'imagePath')")
        # labelme on Windows writes "..\\images\\a.jpg"
        image_path = str(data["imagePath"]).replace("\\", "/")
        image = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(f)), image_path))
        clicks = []
        for k, s in enumerate(data["shapes"]):
            where = f"{f}: shape {k} (label {s.get('label')!r})"
            if s.get("shape_type", "polygon") != "point":
                other += 1
                continue
            pts = s.get("points")
            if not (isinstance(pts, list) and len(pts) == 1 and len(pts[0]) == 2):
                raise PointImportError(f"{where}: a point shape needs 'points': [[x, y]], got {pts!r}")
            clicks.append((pts[0][0], pts[0][1], s.get("label"), where))
        entries.append({"file_name": os.path.relpath(image, root), "width": data.get("imageWidth"),
                        "height": data.get("imageHeight"), "where": f"{f} (imagePath {data['imagePath']!r})",
                        "clicks": clicks})
    return entries, {"non-point shapes": other}
