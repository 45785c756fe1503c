"""Label Studio's side of a request, read without the model: the labeling config's tag names, and the clicks
(keypoint regions) of a task or of an interactive request's context.

A keypoint region (``{"type": "keypointlabels", "id", "original_width", "original_height", "value": {"x",
"y", "keypointlabels": [label]}, "is_positive"}``) has x, y in **percent** of the image, origin at its
top-left corner; the click in continuous pixel coordinates is (x * W / 100, y * H / 100), the inverse of
:func:`wssis_d2.formats.labelstudio.keypoint_region`. A negative keypoint (``is_positive`` false: Alt-click
of a smart keypoint) has no meaning for this model (one positive click per object) and is counted apart.
Pure functions; bad input raises :class:`WSSISInputError` naming the task and the region.
"""
import xml.etree.ElementTree as ET
from typing import List, NamedTuple, Optional, Sequence

import numpy as np

from ..formats.labelstudio import TAG_NAMES
from ..utils.errors import WSSISInputError

__all__ = ["Tags", "parse_label_config", "Clicks", "keypoint_clicks", "task_keypoint_regions"]


class Tags(NamedTuple):
    """Tag names of a labeling config: the brush tag (``from_name`` of the masks), the Image tag it points to
    (``to_name``), the task data key of that image (``$image`` -> ``image``), the keypoint tag (None when the
    config has none) and the brush tag's labels (None: not read from a config)."""

    brush: str
    image: str
    data_key: str
    keypoint: Optional[str]
    labels: Optional[List[str]]


DEFAULT_TAGS = Tags(TAG_NAMES["brushlabels"], TAG_NAMES["image"], "image", TAG_NAMES["keypointlabels"], None)


def parse_label_config(config: Optional[str]) -> Tags:
    """The :class:`Tags` of a labeling config (XML): its first ``BrushLabels``, the ``Image`` of its ``toName``,
    the first ``KeyPointLabels`` on that image. None or "" gives :data:`DEFAULT_TAGS` (those of
    ``formats.labelstudio.labeling_config``).

    Raises:
        WSSISInputError: not XML, no BrushLabels (the masks need one), no Image of that name.
    """
    if not config:
        return DEFAULT_TAGS
    try:
        root = ET.fromstring(config)
    except ET.ParseError as e:
        raise WSSISInputError(f"the labeling config is not XML ({e})") from e
    brush = next(root.iter("BrushLabels"), None)
    if brush is None:
        raise WSSISInputError("the labeling config has no <BrushLabels> tag: the masks of this backend are brush "
                              "regions (python -m wssis_d2.serve --print-config prints a config that fits)")
    image_name = brush.get("toName", "")
    image = next((t for t in root.iter("Image") if t.get("name") == image_name), None)
    if image is None:
        raise WSSISInputError(f"the labeling config's <BrushLabels name={brush.get('name')!r}> points to "
                              f"toName={image_name!r}, which is no <Image> tag")
    value = image.get("value", "")
    keypoint = next((t for t in root.iter("KeyPointLabels") if t.get("toName") == image_name), None)
    labels = [lab.get("value") for lab in brush.iter("Label")]
    return Tags(brush.get("name"), image_name, value[1:] if value.startswith("$") else value,
                None if keypoint is None else keypoint.get("name"), labels)


class Clicks(NamedTuple):
    """The positive clicks of some keypoint regions, in region order: ``ids`` (region ids), ``points`` (N, 2)
    (x, y) pixels, ``labels`` (N,) names, ``size`` (H, W) of the regions' image (None without click), and
    ``num_negative`` negative keypoints left out."""

    ids: List[str]
    points: np.ndarray
    labels: List[str]
    size: Optional[tuple]
    num_negative: int


def keypoint_clicks(regions: Sequence[dict], task_id=None) -> Clicks:
    """The clicks of the ``keypointlabels`` regions among ``regions`` (other types are not clicks).

    Raises:
        WSSISInputError: a keypoint without x / y, image size or label, or keypoints of different image sizes.
    """
    ids, points, labels, sizes, negative = [], [], [], set(), 0
    for r in regions or []:
        if not isinstance(r, dict) or r.get("type") != "keypointlabels":
            continue
        rid = r.get("id")
        value = r.get("value") or {}
        where = f"task {task_id}: keypoint region {rid!r}"
        try:
            w, h = int(r["original_width"]), int(r["original_height"])
            x, y = float(value["x"]) * w / 100.0, float(value["y"]) * h / 100.0
        except (KeyError, TypeError, ValueError) as e:
            raise WSSISInputError(f"{where}: needs value.x, value.y (percent), original_width and "
                                  f"original_height ({type(e).__name__}: {e})") from e
        names = value.get("keypointlabels") or value.get("labels") or []
        if not names:
            raise WSSISInputError(f"{where}: no label (value.keypointlabels is empty)")
        if r.get("is_positive") is False or r.get("is_positive") == 0:
            negative += 1
            continue
        ids.append(str(rid))
        points.append((x, y))
        labels.append(str(names[0]))
        sizes.add((h, w))
    if len(sizes) > 1:
        raise WSSISInputError(f"task {task_id}: keypoints made on images of different sizes {sorted(sizes)}")
    return Clicks(ids, np.asarray(points, np.float64).reshape(-1, 2), labels, next(iter(sizes), None), negative)


def task_keypoint_regions(task: dict) -> List[dict]:
    """The regions of the task's first annotation holding keypoints, else of its first prediction holding
    keypoints, else [] (the task has no clicks)."""
    for key in ("annotations", "predictions"):
        for entry in task.get(key) or []:
            result = entry.get("result") if isinstance(entry, dict) else None
            if any(isinstance(r, dict) and r.get("type") == "keypointlabels" for r in result or []):
                return result
    return []

