"""COCO keypoints: a COCO json whose annotations carry ``keypoints`` ``[x1, y1, v1, ...]``.

One click per annotation: its first keypoint with visibility v > 0. COCO keypoint coordinates are pixel
indices (x = column of the pixel): the click is (x + 0.5, y + 0.5), the pixel's centre, as detectron2
does when it loads COCO keypoints. Labels are the file's category names (matched by name to
``--categories``). Annotations without a visible keypoint are counted and skipped.
"""
from ...data.json_io import load_json
from .core import PointImportError, register_format

__all__ = ["read_coco_keypoints"]


@register_format("coco-keypoints")
def read_coco_keypoints(path, image_root):
    try:
        coco = load_json(path)
    except ValueError as e:
        raise PointImportError(f"{path}: malformed COCO keypoints file ({e})") from e
    for key in ("images", "annotations", "categories"):
        if not isinstance(coco.get(key), list):
            raise PointImportError(f"{path}: malformed COCO keypoints file (missing '{key}' list)")
    names = {c["id"]: c["name"] for c in coco["categories"]}
    entries, by_id = [], {}
    for img in coco["images"]:
        where = f"{path}: image id {img.get('id')} ({img.get('file_name')!r})"
        if img.get("id") in by_id:
            raise PointImportError(f"{where}: image id {img.get('id')} appears twice")
        e = {"file_name": img["file_name"], "width": img.get("width"), "height": img.get("height"),
             "where": where, "clicks": []}
        entries.append(e)
        by_id[img["id"]] = e
    invisible = 0
    for ann in coco["annotations"]:
        where = f"{path}: annotation id {ann.get('id')} (image id {ann.get('image_id')})"
        if ann.get("image_id") not in by_id:
            raise PointImportError(f"{where}: image id not in the file's images")
        if ann.get("category_id") not in names:
            raise PointImportError(f"{where}: category_id {ann.get('category_id')} not in the file's categories")
        kps = ann.get("keypoints")
        if not isinstance(kps, list) or len(kps) % 3:
            raise PointImportError(f"{where}: keypoints must be [x1, y1, v1, ...], got {kps!r}")
        visible = [(kps[i], kps[i + 1]) for i in range(0, len(kps), 3) if kps[i + 2] > 0]
        if not visible:
            invisible += 1
            continue
        x, y = visible[0]
        # pixel index -> continuous coordinate of the pixel's centre
        by_id[ann["image_id"]]["clicks"].append((x + 0.5, y + 0.5, names[ann["category_id"]], where))
    return entries, {"annotations without a visible keypoint": invisible}
