"""Merge full GT and pseudo-labels into one COCO json for the student, and register such a json.

The student is stock SOLOv2 trained on the full images' GT plus the pseudo-labels of the point images,
the pseudo-labels treated exactly like GT (METHOD.md section 5). Rules of ``merge_pseudo_labels``:

* the two files must hold disjoint image ids (ValueError naming the overlap otherwise) and the pseudo
  categories must be among the full file's (same original ids);
* every annotation is renumbered 1..N (full first, then pseudo, each in file order); pseudo
  annotations keep their extra fields (score, point, level, point_ann_id);
* images without any annotation are dropped (counted in ``info``);
* when both files record an ``image_root`` and they differ, ``file_name`` becomes absolute so that one
  image root is not needed.
"""
import json
import os

from ..data.datasets import register_dataset
from ..data.json_io import load_json, write_json_atomic
from ..data.validation import load_coco

__all__ = ["merge_pseudo_labels", "merge_pseudo_label_files", "read_json_info", "register_pseudo_label_dataset"]

TOOL = "wssis_d2.pseudo.merge_pseudo_labels"


def _root(coco):
    root = (coco.get("info") or {}).get("image_root")
    return os.path.abspath(root) if root else None


def _check_annotations(coco, name):
    ids = {img["id"] for img in coco["images"]}
    for ann in coco["annotations"]:
        if ann["image_id"] not in ids:
            raise ValueError(f"{name}: annotation {ann.get('id')} refers to image id {ann['image_id']}, "
                             "which is not in the file's images")


def merge_pseudo_labels(full, pseudo, *, full_name="full", pseudo_name="pseudo"):
    """"full + pseudo" as one COCO instances dict (rules in the module docstring).

    Args:
        full (dict): COCO json of the fully-labeled images.
        pseudo (dict): pseudo-label json (``PseudoLabelExporter``).
        full_name, pseudo_name (str): names (e.g. paths) used in messages and ``info``.

    Returns:
        dict with ``info`` (sources, counts, ``num_images_dropped``), ``images``, ``categories`` (the full
        file's), ``annotations``.
    """
    for coco, name in ((full, full_name), (pseudo, pseudo_name)):
        for key in ("images", "annotations"):
            if not isinstance(coco.get(key), list):
                raise ValueError(f"{name}: missing or invalid '{key}' list")
        _check_annotations(coco, name)
    overlap = {img["id"] for img in full["images"]} & {img["id"] for img in pseudo["images"]}
    if overlap:
        raise ValueError(
            f"{full_name} and {pseudo_name} share {len(overlap)} image ids (e.g. {sorted(overlap)[:5]}); "
            "full and pseudo-labeled images must be disjoint (pseudo-label the points split, not the full one)"
        )
    categories = full.get("categories") or pseudo.get("categories") or []
    known = {c["id"] for c in categories}
    used = {c["id"] for c in pseudo.get("categories", [])} | {a["category_id"] for a in pseudo["annotations"]}
    if used - known:
        raise ValueError(f"{pseudo_name} has category ids {sorted(used - known)} that {full_name} lacks")

    full_root, pseudo_root = _root(full), _root(pseudo)
    absolute = full_root is not None and pseudo_root is not None and full_root != pseudo_root

    def _image(img, root):
        img = dict(img)
        if absolute:
            img["file_name"] = os.path.join(root, img["file_name"])
        return img

    annotations = []
    for ann in list(full["annotations"]) + list(pseudo["annotations"]):
        annotations.append(dict(ann, id=len(annotations) + 1))
    annotated = {ann["image_id"] for ann in annotations}
    images, dropped = [], 0
    for coco, root in ((full, full_root), (pseudo, pseudo_root)):
        for img in coco["images"]:
            if img["id"] in annotated:
                images.append(_image(img, root))
            else:
                dropped += 1
    info = {
        "tool": TOOL,
        "full": {"source": full_name, "num_images": len(full["images"]),
                 "num_annotations": len(full["annotations"])},
        "pseudo": {"source": pseudo_name, "num_images": len(pseudo["images"]),
                   "num_annotations": len(pseudo["annotations"]), "info": pseudo.get("info", {})},
        "image_root": None if absolute else (full_root or pseudo_root),
        "num_images": len(images),
        "num_annotations": len(annotations),
        "num_images_dropped": dropped,
    }
    return {"info": info, "images": images, "categories": categories, "annotations": annotations}


def merge_pseudo_label_files(full_json, pseudo_json, output_json):
    """Load two jsons, ``merge_pseudo_labels`` them and write ``output_json`` atomically.

    Returns:
        the merged ``info`` dict.
    """
    merged = merge_pseudo_labels(load_coco(full_json), load_coco(pseudo_json, "pseudo"),
                                 full_name=os.fspath(full_json), pseudo_name=os.fspath(pseudo_json))
    write_json_atomic(merged, output_json)
    return merged["info"]


def read_json_info(json_file, chunk_size=1 << 16):
    """The ``info`` of a COCO json, reading only the file's start when ``info`` comes first (as in the
    files written here); otherwise the whole file is loaded."""
    prefix = '{"info": '
    with open(json_file) as f:
        head = f.read(chunk_size)
        if head.startswith(prefix):
            decoder = json.JSONDecoder()
            while True:
                try:
                    return decoder.raw_decode(head, len(prefix))[0]
                except json.JSONDecodeError:
                    more = f.read(chunk_size)
                    if not more:
                        break
                    head += more
    return load_json(json_file).get("info") or {}


def register_pseudo_label_dataset(name, json_file, image_root=None, metadata=None):
    """Register a pseudo-label or merged json as a training dataset (detectron2's COCO loader reads
    the RLE masks; train with ``INPUT.MASK_FORMAT bitmask``).

    Args:
        name (str): dataset name.
        json_file (str): the json.
        image_root (str or None): default: the json's ``info["image_root"]`` ("" when the file names are
            absolute).
        metadata (dict or None): extra metadata, e.g. the source set's ``thing_classes``.
    """
    if image_root is None:
        image_root = read_json_info(json_file).get("image_root") or ""
    register_dataset(name, json_file, "coco", image_root, metadata)
    return name
