"""A generated "own dataset" in the files a labeling team has: the walk-through of README "Your own data"
and its end-to-end test, without the built-in dataset names.

``write_custom_example(out_dir, ...)`` generates shapes images (``generate_shapes_dataset``), splits the
training images (``make_wssis_splits``: PERCENT fully labeled, centroid clicks on the others) and writes::

    out_dir/images/                  all images (train and val)
    out_dir/full.json                COCO instances with masks: the fully-labeled images
    out_dir/clicks_labelme/*.json    one labelme file per clicked image, its clicks as point shapes
    out_dir/points_gt.json           the true masks of the clicked images (kept aside: quality only)
    out_dir/val.json                 COCO instances with masks: validation images
"""
import os
import shutil

from ..data.json_io import load_json, write_json_atomic
from .review_export import export_labelme
from ..data.splits import make_wssis_splits
from ..data.synthetic import generate_shapes_dataset

__all__ = ["write_custom_example"]


def write_custom_example(out_dir: str, num_train: int, num_val: int, *, size: int = 192, percent: float = 10,
                         seed: int = 0, split_seed: int = 1, style: str = "clean", max_instances: int = 6,
                         min_size: float = 16.0) -> dict:
    """Write the files of the module docstring; returns their paths."""
    gen = os.path.join(out_dir, ".generated")
    for split, num in (("train", num_train), ("val", num_val)):
        generate_shapes_dataset(gen, num, image_size=size, seed=seed, split=split, max_instances=max_instances,
                                min_size=min_size, style=style)
    images = os.path.join(out_dir, "images")
    if os.path.isdir(images):
        shutil.rmtree(images)
    shutil.move(os.path.join(gen, "images"), images)
    train_json = os.path.join(gen, "train.json")
    splits = make_wssis_splits(load_json(train_json), json_file=train_json, seed=split_seed, percent=percent,
                               point_rule="centroid", image_root=images)
    paths = {"image_root": images,
             "full": write_json_atomic(splits["full"], os.path.join(out_dir, "full.json")),
             "points_gt": write_json_atomic(splits["points_gt"], os.path.join(out_dir, "points_gt.json")),
             "val": os.path.join(out_dir, "val.json"), "clicks_labelme": os.path.join(out_dir, "clicks_labelme")}
    shutil.move(os.path.join(gen, "val.json"), paths["val"])
    export_labelme(splits["points"], paths["clicks_labelme"], images)
    shutil.rmtree(gen)
    return paths
