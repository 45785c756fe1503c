"""The one place where wssis-d2 writes detectron2's ``DatasetCatalog`` / ``MetadataCatalog``.

Every ``register_*`` of the package (standard splits and shapes, point files, the user's files of
``DATASETS.WSSIS_REGISTER``, MaskRefineNet samples, pseudo-label jsons, the pipeline's names) calls
:func:`register_dataset`. A name stands for one json file per process:

* the same name with the same file (compared as absolute paths) is a no-op (returns False);
* the same name with another file raises ValueError naming both files (nothing is re-registered).

Kinds (how the json is loaded, lazily, on first use; the metadata each sets besides ``json_file`` and
``image_root``):

* ``"masks"``: a COCO instances json with masks, loaded with detectron2's ``load_coco_json`` after a check
  that the file exists (error with ``hint``), degenerate masks cleaned (``clean_mask_records``);
  ``evaluator_type`` "coco", ``label_kind`` "full" unless the metadata gives one (e.g. "points_gt").
* ``"coco"``: a COCO instances json read as is by ``load_coco_json`` (what detectron2's
  ``register_coco_instances`` registers): the pipeline's custom files, merged or pseudo-label jsons;
  ``evaluator_type`` "coco", ``label_kind`` "full" unless given.
* ``"points"``: a point-label json (:func:`~.point_instances.load_point_json`); ``label_kind`` "points",
  no evaluator (a points set has no masks).
* ``"user"``: a file of the user's (``DATASETS.WSSIS_REGISTER``, :mod:`.user`): read once now, checked,
  categories from the json; a points file is a ``"points"`` set, otherwise a masks set whose flagged
  annotations (``wssis_flag``) are left out.
* a kind another package adds with :func:`add_dataset_kind` (its loader and metadata; ``image_root`` only
  when given): MaskRefineNet's ``"mrn"`` samples (:mod:`wssis_d2.mrn.datasets` adds it when imported).
  Registration knows no such package: ``data/`` never imports ``mrn/``.
"""
import logging
import os
from typing import Callable, Dict, List, Optional, Tuple

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.coco import load_coco_json

from ..coco_masks import clean_mask_records
from .point_instances import load_point_json

__all__ = ["DATASET_KINDS", "add_dataset_kind", "dataset_kinds", "register_dataset", "registered_json"]

logger = logging.getLogger(__name__)

DATASET_KINDS = ("masks", "coco", "points", "user")  # the built-in kinds
_ADDED_KINDS: Dict[str, Tuple[Callable[[str, Optional[str], str], List[dict]], dict]] = {}


def add_dataset_kind(kind: str, load: Callable[[str, Optional[str], str], List[dict]], metadata: dict) -> None:
    """Add a dataset kind that another package loads (e.g. ``"mrn"``, by :mod:`wssis_d2.mrn.datasets`).

    Args:
        kind: the new kind's name (not a built-in one; adding the same kind again replaces it).
        load: ``load(json_file, image_root or None, name) -> list of dataset dicts``, called lazily.
        metadata: set on every dataset of this kind (e.g. ``evaluator_type``, ``label_kind``).
    """
    if kind in DATASET_KINDS:
        raise ValueError(f"{kind!r} is a built-in dataset kind")
    _ADDED_KINDS[kind] = (load, dict(metadata))


def dataset_kinds() -> Tuple[str, ...]:
    """The built-in kinds and those added by :func:`add_dataset_kind`."""
    return DATASET_KINDS + tuple(_ADDED_KINDS)


def registered_json(name: str) -> Optional[str]:
    """The json file ``name`` is registered with (metadata ``json_file``); None when it is not registered."""
    if name not in DatasetCatalog.list():
        return None
    return MetadataCatalog.get(name).get("json_file", None)


def _load_masks(json_file, image_root, name, hint):
    if not os.path.isfile(json_file):
        raise FileNotFoundError(f"{json_file} (dataset '{name}') does not exist. {hint or ''}".rstrip())
    return clean_mask_records(load_coco_json(json_file, image_root, name), f"{name} ({json_file})")


def register_dataset(name: str, json_file: str, kind: str, image_root: Optional[str] = "",
                     metadata: Optional[dict] = None, *, hint: Optional[str] = None) -> bool:
    """Register ``json_file`` as dataset ``name`` (module docstring: kinds, metadata, idempotence).

    Args:
        name: the dataset name.
        json_file: the json (read lazily, except kind "user").
        kind: one of :func:`dataset_kinds`.
        image_root: folder the images' ``file_name`` are relative to.
        metadata: extra metadata (``thing_classes``, ``label_kind``, ``points_gt_dataset``, ...).
        hint: added to the error when the file is missing when the dataset is used.

    Returns:
        True when ``name`` was registered now, False when it already was, with this file.
    """
    if kind not in dataset_kinds():
        raise ValueError(f"Unknown dataset kind {kind!r} for {name!r}; choose one of {list(dataset_kinds())} "
                         "(a package adds its own kind when imported: 'mrn' by wssis_d2.mrn)")
    if name in DatasetCatalog.list():
        known = registered_json(name)
        if known and os.path.abspath(known) == os.path.abspath(json_file):
            return False
        raise ValueError(f"Dataset {name!r} is already registered with {known}, not {json_file}: a name stands "
                         "for one file in a process (choose another name, or use a new process)")
    meta = dict(metadata or {})
    if kind == "user":  # points or masks, decided by the file
        from .user import load_user_masks, read_user_json

        is_points, meta = read_user_json(name, json_file, meta)
        kind = "points" if is_points else "masks"
        load_masks = load_user_masks  # leaves out the flagged annotations, then cleans
    else:
        load_masks = _load_masks
    if kind == "points":
        DatasetCatalog.register(name, lambda: load_point_json(json_file, image_root, name, missing_hint=hint))
        meta["label_kind"] = "points"
    elif kind == "masks":
        DatasetCatalog.register(name, lambda: load_masks(json_file, image_root, name, hint))
    elif kind == "coco":
        DatasetCatalog.register(name, lambda: load_coco_json(json_file, image_root, name))
    else:  # an added kind
        load, added_meta = _ADDED_KINDS[kind]
        DatasetCatalog.register(name, lambda: load(json_file, image_root or None, name))
    if kind in _ADDED_KINDS:
        meta.update(added_meta)
        if image_root:
            meta["image_root"] = image_root
    else:
        meta.setdefault("label_kind", "full")
        if kind != "points":
            meta["evaluator_type"] = "coco"
        meta["image_root"] = image_root
    MetadataCatalog.get(name).set(json_file=json_file, **meta)
    return True
