"""Register a user's COCO files from the config (``DATASETS.WSSIS_REGISTER``), so that ``train_net.py``
trains and evaluates on them without Python.

Each entry is ``[name, json_file, image_root]``. The json is looked at once, at registration:

* annotations with ``point_coords`` (and no ``segmentation``): a **points** set, loaded lazily with
  :func:`load_point_json` (metadata ``label_kind`` "points"; pseudo-labels are exported for it);
* otherwise a COCO instances json with masks, loaded lazily with detectron2's ``load_coco_json``
  (``evaluator_type`` "coco"). Annotations flagged by the pipeline (``wssis_flag``, the fallback masks of
  labels.json) are left out, with a count in the log, so ``labels.json`` trains like the pipeline's student.

Metadata: ``thing_classes`` / ``thing_dataset_id_to_contiguous_id`` from the json's categories (sorted by
id), ``json_file``, ``image_root``. A name already registered with the same json is left alone; with
another json it is an error.
"""
import logging
import os

from detectron2.data.datasets.coco import load_coco_json

from ..categories import category_metadata
from ..coco_masks import clean_mask_records
from ..json_io import load_json
from ..validation import check_coco
from ...utils.errors import WSSISInputError
from .register import register_dataset

__all__ = ["is_point_json", "load_user_masks", "read_user_json", "register_user_datasets"]

logger = logging.getLogger(__name__)


def is_point_json(coco: dict, json_file: str = "<json>") -> bool:
    """True when the annotations carry points only (``point_coords``, no ``segmentation``); ValueError
    when the file mixes point-only and mask annotations."""
    kinds = {("point_coords" in a and "segmentation" not in a) for a in coco.get("annotations") or []}
    if len(kinds) > 1:
        raise WSSISInputError(f"{json_file}: mixes point-only annotations (point_coords) and annotations with masks")
    return kinds == {True}


def load_user_masks(json_file, image_root, name, hint=None):
    """detectron2's ``load_coco_json`` without the flagged annotations (``wssis_flag``), masks cleaned."""
    dicts = load_coco_json(json_file, image_root, name, extra_annotation_keys=["wssis_flag"])
    flagged = 0
    for d in dicts:
        kept = [a for a in d.get("annotations", []) if not a.get("wssis_flag")]
        flagged += len(d.get("annotations", [])) - len(kept)
        for a in kept:
            a.pop("wssis_flag", None)
        d["annotations"] = kept
    if flagged:
        logger.info(f"{name}: left out {flagged} flagged annotations (wssis_flag: fallback masks) of {json_file}")
    return clean_mask_records(dicts, f"{name} ({json_file})")


def read_user_json(name: str, json_file: str, metadata: dict):
    """(is a points file, ``metadata`` + categories of the json): the file read and checked once, when
    ``name`` is registered (kind "user" of :func:`~.register.register_dataset`)."""
    coco = check_coco(load_json(json_file), json_file)  # keys, types, ids, points (WSSISInputError)
    is_points = is_point_json(coco, json_file)
    logger.info(f"Registered {name!r} ({'points' if is_points else 'masks'}, {len(coco.get('images') or [])} "
                f"images) from {json_file}")
    return is_points, dict(metadata, **category_metadata(coco.get("categories") or [], json_file))


def register_user_datasets(entries) -> list:
    """Register every ``[name, json_file, image_root]`` of ``entries`` (module docstring). Returns the
    names newly registered."""
    registered = []
    for entry in entries:
        if len(entry) != 3:
            raise ValueError(f"DATASETS.WSSIS_REGISTER entries are [name, json_file, image_root], got {entry!r}")
        name, json_file, image_root = (os.fspath(v) for v in entry)
        if register_dataset(name, os.path.abspath(json_file), "user", image_root):
            registered.append(name)
    return registered
