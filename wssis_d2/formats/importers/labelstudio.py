"""Label Studio: the JSON export (a list of tasks, https://labelstud.io/guide/export#Label-Studio-JSON-format-of-annotated-tasks).

A task: ``{"data": {"image": URL}, "annotations": [{"result": [{"type": "keypointlabels",
"original_width", "original_height", "image_rotation", "value": {"x", "y", "keypointlabels": [label]}}]}]}``.
``value.x`` / ``value.y`` are in **percent** of ``original_width`` / ``original_height`` (continuous,
(0, 0) = top-left corner): x_px = x / 100 * original_width. The image is matched by file name under the
image root, allowing Label Studio's upload prefix ``<8 hex>-`` before it (``/data/upload/3/1a2b3c4d-cat.jpg``
matches ``cat.jpg``); ``/data/local-files/?d=dir/cat.jpg`` uses the ``d`` path's name. A rotated image
(``image_rotation`` != 0) is an error: its coordinates are in the rotated frame. The first non-cancelled
annotation of a task is used (further ones are counted, not merged: they would duplicate clicks).
"""
import json
import posixpath
from urllib.parse import parse_qs, unquote, urlparse

from .core import ImageIndex, PointImportError, register_format

__all__ = ["read_labelstudio", "image_name_from_url"]


def image_name_from_url(url: str) -> str:
    """The file name in a Label Studio image URL (``d=`` of local-files URLs, else the URL path's)."""
    parsed = urlparse(url)
    d = parse_qs(parsed.query).get("d")
    return posixpath.basename(unquote(d[0] if d else parsed.path))


@register_format("labelstudio")
def read_labelstudio(path, image_root):
    try:
        with open(path) as f:
            tasks = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise PointImportError(f"{path}: malformed Label Studio export ({e})") from e
    if not isinstance(tasks, list):
        raise PointImportError(f"{path}: a Label Studio JSON export is a list of tasks, got {type(tasks).__name__}")
    index = ImageIndex(image_root)
    entries, counts = [], {"non-keypoint results": 0, "extra annotations of a task": 0, "cancelled annotations": 0}
    for t, task in enumerate(tasks):
        where = f"{path}: task {task.get('id', t) if isinstance(task, dict) else t}"
        url = ((task.get("data") or {}).get("image") if isinstance(task, dict) else None)
        if not url:
            raise PointImportError(f"{where}: no data.image")
        name = index.find(image_name_from_url(url), f"{where} (image {url!r})")
        annotations = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
        counts["cancelled annotations"] += len(task.get("annotations") or []) - len(annotations)
        counts["extra annotations of a task"] += max(0, len(annotations) - 1)
        clicks, width, height = [], None, None
        for k, r in enumerate((annotations[0].get("result") or []) if annotations else []):
            rw = f"{where} result {r.get('id', k)!r}"
            if r.get("type") != "keypointlabels":
                counts["non-keypoint results"] += 1
                continue
            if r.get("image_rotation", 0):
                raise PointImportError(f"{rw}: image_rotation {r['image_rotation']} is not supported "
                                       "(coordinates are in the rotated frame); un-rotate the image in Label Studio")
            v = r.get("value") or {}
            try:
                width, height = int(r["original_width"]), int(r["original_height"])
                x, y = float(v["x"]) / 100.0 * width, float(v["y"]) / 100.0 * height
                label = v["keypointlabels"][0]
            except (KeyError, IndexError, TypeError, ValueError) as e:
                raise PointImportError(f"{rw}: malformed keypoint result ({e!r}; needs original_width, "
                                       "original_height, value.x, value.y, value.keypointlabels)") from e
            clicks.append((x, y, label, f"{rw} (label {label!r})"))
        entries.append({"file_name": name, "width": width, "height": height, "where": f"{where} (image {url!r})",
                        "clicks": clicks})
    return entries, counts
