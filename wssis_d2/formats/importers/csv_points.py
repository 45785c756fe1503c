"""CSV: header ``file_name,x,y,category``, one click per row; ``category`` is a category name and x, y are
continuous pixel coordinates ((0, 0) = the image's top-left corner; a pixel's centre is (j + 0.5,
i + 0.5)). ``file_name`` is relative to the image root. A row with empty x, y and category lists an
image without clicks. Image sizes come from the image files.
"""
import csv

from .core import PointImportError, register_format

__all__ = ["read_csv"]

HEADER = ["file_name", "x", "y", "category"]


@register_format("csv")
def read_csv(path, image_root):
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, csv.Error, UnicodeDecodeError) as e:
        raise PointImportError(f"{path}: malformed CSV ({e})") from e
    if not rows or [c.strip() for c in rows[0]] != HEADER:
        raise PointImportError(f"{path}: the first line must be the header {','.join(HEADER)}, got "
                               f"{','.join(rows[0]) if rows else 'an empty file'}")
    entries = {}
    for n, row in enumerate(rows[1:], start=2):
        where = f"{path}: line {n}"
        if not row or not any(c.strip() for c in row):
            continue
        if len(row) != 4 or not row[0].strip():
            raise PointImportError(f"{where}: expected 4 fields {','.join(HEADER)}, got {row!r}")
        name, x, y, label = (c.strip() for c in row)
        e = entries.setdefault(name, {"file_name": name, "width": None, "height": None, "where": where, "clicks": []})
        if not (x or y or label):
            continue  # an image without clicks
        try:
            e["clicks"].append((float(x), float(y), label, f"{where} (label {label!r})"))
        except ValueError as err:
            raise PointImportError(f"{where}: x, y must be numbers, got {x!r}, {y!r}") from err
    return list(entries.values()), {}
