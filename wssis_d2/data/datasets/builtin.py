"""Standard dataset names of wssis-d2 (registered lazily, never touching detectron2's builtins).

Names (``<p>`` in ``SPLIT_PERCENTS``, ``<s>`` in the seeds, default 1):

* COCO 2017, files under ``$DETECTRON2_DATASETS/coco/wssis_splits/``, images ``coco/train2017``:
  ``coco_2017_train_<p>p_s<s>_full``, ``coco_2017_train_<p>p_s<s>_points``,
  ``coco_2017_train_<p>p_s<s>_points_gt``.
* The embedded synthetic shapes under ``$DETECTRON2_DATASETS/wssis_shapes/``:
  ``wssis_shapes_train``, ``wssis_shapes_val`` and ``wssis_shapes_train_<p>p_s<s>_{full,points,points_gt}``
  (split files in ``wssis_shapes/splits/``).

``DETECTRON2_DATASETS`` defaults to ``datasets`` (detectron2's convention). Files are only read when a
dataset is used; a missing file raises FileNotFoundError with the command that generates it.
Registering again leaves names registered with the same files alone; with other files it is an error
(``register.py``).
"""
import os

from detectron2.data.datasets.builtin_meta import _get_builtin_metadata

from ..categories import category_metadata
from ..splits import split_file_names
from ..synthetic import SHAPE_CATEGORIES
from .register import register_dataset

__all__ = ["SPLIT_PERCENTS", "default_root", "register_wssis_shapes", "register_wssis_splits"]

SPLIT_PERCENTS = (1, 2, 5, 10, 20, 30, 40, 50)


def default_root():
    """``$DETECTRON2_DATASETS`` (default ``datasets``), read at call time."""
    return os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))


def _register_split_triplet(prefix, file_prefix, percent, seed, split_dir, image_root, metadata, hint,
                            registered):
    """Register ``<prefix>_<p>p_s<seed>_{full,points,points_gt}`` (names already registered with these
    files are left alone)."""
    files = split_file_names(file_prefix, seed, percent=percent)
    base = f"{prefix}_{percent}p_s{seed}"
    for kind, fname in files.items():
        name = f"{base}_{kind}"
        if kind == "points":
            meta, data_kind = dict(metadata, points_gt_dataset=f"{base}_points_gt"), "points"
        else:
            meta, data_kind = dict(metadata, label_kind=kind), "masks"
        if register_dataset(name, os.path.join(split_dir, fname), data_kind, image_root, meta, hint=hint):
            registered.append(name)


def _shapes_metadata():
    return category_metadata(SHAPE_CATEGORIES, "SHAPE_CATEGORIES")


def register_wssis_shapes(root=None, percents=SPLIT_PERCENTS, seeds=(1,)):
    """Register the synthetic shapes dataset found under ``root`` (default
    ``$DETECTRON2_DATASETS/wssis_shapes``). Returns the names newly registered."""
    root = root or os.path.join(default_root(), "wssis_shapes")
    image_root = os.path.join(root, "images")
    meta = _shapes_metadata()
    gen_hint = f"Generate it with: python datasets/generate_shapes.py --output-dir {root}"
    registered = []
    for split in ("train", "val", "test"):  # test: only generated when asked for (NUM_TEST, --num-test)
        name = f"wssis_shapes_{split}"
        if register_dataset(name, os.path.join(root, f"{split}.json"), "masks", image_root, meta, hint=gen_hint):
            registered.append(name)
    for p in percents:
        for s in seeds:
            hint = (f"Generate it with: python datasets/generate_shapes.py --output-dir {root} "
                    f"--split-percents {p} --split-seed {s}  (or: python datasets/prepare_wssis_splits.py "
                    f"--json {root}/train.json --image-root {image_root} --percent {p} --seed {s} "
                    f"--output-dir {root}/splits)")
            _register_split_triplet("wssis_shapes_train", "train", p, s, os.path.join(root, "splits"),
                                    image_root, meta, hint, registered)
    return registered


def register_wssis_splits(root=None, percents=SPLIT_PERCENTS, seeds=(1,)):
    """Register the COCO 2017 PointWSSIS splits and the synthetic shapes dataset.

    Args:
        root (str or None): datasets root; default ``$DETECTRON2_DATASETS`` (or ``datasets``).
        percents (iterable[int]): fully-labeled percentages.
        seeds (iterable[int]): split seeds.

    Returns:
        list[str]: names newly registered (names already registered with the same files are left
        alone, so calling this twice is harmless; with other files: ValueError).
    """
    root = root or default_root()
    coco_root = os.path.join(root, "coco")
    split_dir = os.path.join(coco_root, "wssis_splits")
    image_root = os.path.join(coco_root, "train2017")
    source = os.path.join(coco_root, "annotations", "instances_train2017.json")
    meta = _get_builtin_metadata("coco")
    registered = []
    for p in percents:
        for s in seeds:
            hint = (f"Generate it with: python datasets/prepare_wssis_splits.py --json {source} "
                    f"--image-root {image_root} --percent {p} --seed {s} --name train2017 "
                    f"--output-dir {split_dir}")
            _register_split_triplet("coco_2017_train", "train2017", p, s, split_dir, image_root, meta,
                                    hint, registered)
    registered += register_wssis_shapes(os.path.join(root, "wssis_shapes"), percents, seeds)
    return registered
