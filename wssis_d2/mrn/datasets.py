"""Register MaskRefineNet sample jsons (``tools/build_mrn_dataset.py``) as detectron2 datasets.

Dataset dicts: ONE PER SAMPLE (instance), so that detectron2's train loader, sampler and trivial batch
collator give exactly ``SOLVER.IMS_PER_BATCH`` crops per batch::

    {"file_name", "height", "width", "image_id", "sample_id",
     "annotations": [{"id": sample id,
                      "category_id": contiguous class index (data.categories.contiguous_category_map),
                      "segmentation": coarse mask (compressed RLE),
                      "gt_segmentation": target mask (as in the GT json),
                      "point": [x, y] continuous image coordinates,
                      "gt_ann_id", "iscrowd": 0}]}

(a single-element ``annotations`` list lets detectron2 log the class histogram of the samples).
Metadata: ``thing_classes``, ``thing_dataset_id_to_contiguous_id``, ``json_file``, ``image_root``,
``evaluator_type`` "mrn", ``label_kind`` "mrn_samples".
"""
import glob
import os
from typing import List, Optional

from detectron2.data import MetadataCatalog

from ..data.categories import category_metadata
from ..data.datasets import add_dataset_kind, register_dataset
from ..data.json_io import load_json

__all__ = ["load_mrn_json", "register_mrn_dataset", "register_mrn_datasets", "mrn_dataset_root"]

_HINT = "Build it with tools/build_mrn_dataset.py (see docs/MRN.md)."


def mrn_dataset_root(root: Optional[str] = None) -> str:
    """Directory of the standard MRN sample jsons: ``<root>/mrn``, root = ``$DETECTRON2_DATASETS``
    (default ``datasets``)."""
    root = root or os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))
    return os.path.join(root, "mrn")


def load_mrn_json(json_file: str, image_root: Optional[str] = None,
                  dataset_name: Optional[str] = None) -> List[dict]:
    """Load an MRN sample json into per-sample dataset dicts (format in the module docstring).

    Args:
        json_file: the sample json.
        image_root: directory of the images; default ``info["image_root"]`` of the json.
        dataset_name: if given, its metadata receives ``thing_classes`` and
            ``thing_dataset_id_to_contiguous_id`` (from the json's categories).
    """
    data = load_json(json_file, hint=_HINT)
    info = data.get("info") or {}
    image_root = image_root or info.get("image_root")
    if not image_root:
        raise ValueError(f"{json_file}: no image root (info['image_root'] is missing; pass image_root)")
    cats = category_metadata(data["categories"], json_file)
    id_map = cats["thing_dataset_id_to_contiguous_id"]
    if dataset_name is not None:
        MetadataCatalog.get(dataset_name).set(**cats)
    images = {img["id"]: img for img in data["images"]}
    dicts = []
    for ann in data["annotations"]:
        img = images.get(ann["image_id"])
        if img is None:
            raise ValueError(f"{json_file}: sample {ann['id']} refers to unknown image {ann['image_id']}")
        if ann["category_id"] not in id_map:
            raise ValueError(f"{json_file}: sample {ann['id']} has unknown category {ann['category_id']}")
        dicts.append({
            "file_name": os.path.join(image_root, img["file_name"]),
            "height": img["height"],
            "width": img["width"],
            "image_id": img["id"],
            "sample_id": ann["id"],
            "annotations": [{
                "id": ann["id"],
                "category_id": id_map[ann["category_id"]],
                "segmentation": ann["segmentation"],
                "gt_segmentation": ann["gt_segmentation"],
                "point": ann["point"],
                "gt_ann_id": ann.get("gt_ann_id", -1),
                "iscrowd": 0,
            }],
        })
    return dicts


# MRN registers its own kind: wssis_d2.data knows nothing of MaskRefineNet (no data <-> mrn import circle).
add_dataset_kind("mrn", load_mrn_json, {"evaluator_type": "mrn", "label_kind": "mrn_samples"})


def register_mrn_dataset(name: str, json_file: str, image_root: Optional[str] = None) -> bool:
    """Register an MRN sample json as dataset ``name`` (read lazily, on first use) through
    :func:`wssis_d2.data.datasets.register_dataset` (kind "mrn"). Returns True when newly registered."""
    return register_dataset(name, json_file, "mrn", image_root)


def register_mrn_datasets(root: Optional[str] = None) -> List[str]:
    """Register every ``<root>/mrn/*.json`` (see :func:`mrn_dataset_root`) under its file stem, e.g.
    ``datasets/mrn/wssis_shapes_5p_s1_mrn_train.json`` -> ``wssis_shapes_5p_s1_mrn_train``.

    Names already registered with the same file are left alone. Returns the names newly registered.
    """
    registered = []
    for path in sorted(glob.glob(os.path.join(mrn_dataset_root(root), "*.json"))):
        name = os.path.splitext(os.path.basename(path))[0]
        if register_mrn_dataset(name, path):
            registered.append(name)
    return registered
