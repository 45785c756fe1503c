"""CVAT: an export in "CVAT for images 1.1" (XML, https://docs.cvat.ai/docs/manual/advanced/xml_format/).

``<image id name width height>`` elements hold ``<points label="car" points="x1,y1;x2,y2" .../>``:
**each point of an element is one click, one instance**. Other elements (box, polygon, ...) are
ignored (counted). CVAT coordinates are continuous with (0, 0) at the top-left corner: no shift.
"""
import xml.etree.ElementTree as ET

from .core import PointImportError, register_format

__all__ = ["read_cvat"]


def _points(text, where):
    try:
        pts = [tuple(float(v) for v in p.split(",")) for p in text.strip().split(";") if p.strip()]
    except ValueError as e:
        raise PointImportError(f"{where}: malformed points {text!r} ({e})") from e
    if not pts or any(len(p) != 2 for p in pts):
        raise PointImportError(f"{where}: points must be 'x1,y1;x2,y2;...', got {text!r}")
    return pts


@register_format("cvat")
def read_cvat(path, image_root):
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        raise PointImportError(f"{path}: malformed CVAT XML ({e})") from e
    if root.tag != "annotations":
        raise PointImportError(f"{path}: not a 'CVAT for images 1.1' export (root <{root.tag}>, expected <annotations>)")
    entries, other = [], 0
    for image in root.iter("image"):
        name = image.get("name")
        where = f"{path}: <image id={image.get('id')!r} name={name!r}>"
        if not name:
            raise PointImportError(f"{where}: no name attribute")
        try:
            width, height = int(image.get("width", 0)), int(image.get("height", 0))
        except ValueError as e:
            raise PointImportError(f"{where}: bad width/height ({e})") from e
        clicks = []
        for k, el in enumerate(image):
            if el.tag != "points":
                other += 1
                continue
            ew = f"{where} <points> {k} (label {el.get('label')!r})"
            for j, (x, y) in enumerate(_points(el.get("points", ""), ew)):
                clicks.append((x, y, el.get("label"), f"{ew} point {j}"))
        entries.append({"file_name": name, "width": width or None, "height": height or None, "where": where,
                        "clicks": clicks})
    return entries, {"non-points elements": other}
