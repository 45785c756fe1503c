"""Datasets of a pipeline run: generating the embedded shapes dataset, registering the standard names
under the run's root or the files of DATA.CUSTOM (in every process of every stage) and registering the
jsons the run makes."""
import logging
import os
import time
from typing import Dict

from detectron2.data import DatasetCatalog, MetadataCatalog

from ..data.categories import category_metadata
from ..data.click_gt import align_gt_to_clicks
from ..data.datasets import register_dataset, register_wssis_shapes, register_wssis_splits, registered_json
from ..data.json_io import load_json, write_json_atomic
from ..data.splits import split_file_names, write_wssis_splits
from ..data.validation import load_coco
from ..data.synthetic import generate_shapes_dataset
from ..mrn.datasets import register_mrn_dataset
from ..pseudo.labels import check_disjoint
from ..pseudo.merge import register_pseudo_label_dataset
from .config import CUSTOM_NAMES
from .scale import run_scale_choice

__all__ = ["shapes_root", "custom_gt_json", "prepare_data", "register_datasets", "register_json_dataset", "dataset_json"]

logger = logging.getLogger(__name__)


def shapes_root(pcfg) -> str:
    return os.path.join(pcfg.DATA.ROOT, "wssis_shapes")


def custom_gt_json(pcfg) -> str:
    """Where the data stage writes DATA.CUSTOM.POINTS_GT_JSON aligned to the clicks (``align_gt_to_clicks``)."""
    return os.path.join(pcfg.OUTPUT_DIR, "data", "points_gt_aligned.json")


def _custom_files(pcfg) -> Dict[str, str]:
    """DATASETS key -> the json registered under that key's name (DATA.KIND custom; given files only)."""
    c = pcfg.DATA.CUSTOM
    files = {"FULL": c.FULL_JSON, "POINTS": c.POINTS_JSON, "TEST": c.TEST_JSON or c.VAL_JSON,
             "VAL": c.VAL_JSON if c.TEST_JSON else "",
             "POINTS_GT": custom_gt_json(pcfg) if c.POINTS_GT_JSON else "", "TRAIN_ALL": c.TRAIN_ALL_JSON}
    return {k: v for k, v in files.items() if v}


def _register_custom(pcfg) -> None:
    """Register the DATA.CUSTOM files as CUSTOM_NAMES (categories of FULL_JSON, sorted by id, as
    detectron2's load_coco_json orders them)."""
    files = _custom_files(pcfg)
    if all(registered_json(CUSTOM_NAMES[key]) == json_file for key, json_file in files.items()):
        return  # FULL_JSON is read only when something is registered
    cats = category_metadata(load_json(pcfg.DATA.CUSTOM.FULL_JSON).get("categories") or [],
                             f"DATA.CUSTOM.FULL_JSON {pcfg.DATA.CUSTOM.FULL_JSON}")
    for key, json_file in files.items():
        meta = dict(cats)
        if key == "POINTS" and "POINTS_GT" in files:
            meta["points_gt_dataset"] = CUSTOM_NAMES["POINTS_GT"]
        elif key != "POINTS":
            meta["label_kind"] = "points_gt" if key == "POINTS_GT" else "full"
        register_dataset(CUSTOM_NAMES[key], json_file, "points" if key == "POINTS" else "coco",
                         pcfg.DATA.CUSTOM.IMAGE_ROOT, meta)


def register_datasets(pcfg) -> None:
    """Register the standard names of ``DATA.KIND`` (the ``DATA.PERCENT`` / ``DATA.SPLIT_SEED`` split)
    under ``DATA.ROOT``, or the DATA.CUSTOM files (DATA.KIND custom), through ``register_dataset``: a no-op
    when they are registered with these files, an error when a name is registered with another file in
    this process."""
    if pcfg.DATA.KIND == "custom":
        _register_custom(pcfg)
        return
    percents, seeds = (pcfg.DATA.PERCENT,), (pcfg.DATA.SPLIT_SEED,)
    if pcfg.DATA.KIND == "shapes":
        register_wssis_shapes(shapes_root(pcfg), percents=percents, seeds=seeds)
    else:
        register_wssis_splits(pcfg.DATA.ROOT, percents=percents, seeds=seeds)


def register_json_dataset(name: str, json_file: str, kind: str = "train") -> str:
    """Register a json the run made: ``kind`` "mrn" (MaskRefineNet samples) or "train" (COCO json with
    RLE masks: merged full + pseudo-labels)."""
    json_file = os.path.abspath(json_file)
    if kind == "mrn":
        register_mrn_dataset(name, json_file)
    elif kind == "train":
        register_pseudo_label_dataset(name, json_file)
    else:
        raise ValueError(f"Unknown dataset kind {kind!r}")
    return name


def dataset_json(name: str) -> str:
    """The json file of a registered dataset (metadata ``json_file``)."""
    json_file = MetadataCatalog.get(name).get("json_file", None)
    if not json_file:
        raise ValueError(f"Dataset {name!r} has no json_file in its metadata")
    return json_file


def _generate_shapes(pcfg) -> Dict[str, float]:
    """Generate what is missing of the shapes dataset and the PERCENT split. Returns seconds per part."""
    s = pcfg.DATA.SHAPES
    root = shapes_root(pcfg)
    seconds = {}
    for split, num in (("train", s.NUM_TRAIN), ("val", s.NUM_VAL), ("test", s.NUM_TEST)):
        if os.path.isfile(os.path.join(root, f"{split}.json")) or (split == "test" and not num):
            continue
        t0 = time.perf_counter()
        logger.info(f"Generating {num} {s.SIZE}-px shapes images ({split}) under {root} (seed {s.SEED})")
        generate_shapes_dataset(root, num, image_size=s.SIZE, seed=s.SEED, split=split,
                                max_instances=s.MAX_INSTANCES, min_size=s.MIN_SIZE, style=s.STYLE,
                                max_size_fraction=s.MAX_SIZE_FRACTION, min_instances=s.MIN_INSTANCES)
        seconds[split] = round(time.perf_counter() - t0, 2)
    split_dir = os.path.join(root, "splits")
    files = split_file_names("train", pcfg.DATA.SPLIT_SEED, percent=pcfg.DATA.PERCENT)
    if not all(os.path.isfile(os.path.join(split_dir, f)) for f in files.values()):
        t0 = time.perf_counter()
        write_wssis_splits(os.path.join(root, "train.json"), split_dir, seed=pcfg.DATA.SPLIT_SEED,
                           percent=pcfg.DATA.PERCENT, point_rule="centroid",
                           image_root=os.path.join(root, "images"), name="train")
        seconds["split"] = round(time.perf_counter() - t0, 2)
    return seconds


def _coco_splits(pcfg) -> Dict[str, float]:
    """Write the COCO split files of DATA.PERCENT / DATA.SPLIT_SEED when they are missing and
    instances_train2017.json is there (what datasets/prepare_wssis_splits.py does)."""
    coco = os.path.join(pcfg.DATA.ROOT, "coco")
    source = os.path.join(coco, "annotations", "instances_train2017.json")
    split_dir = os.path.join(coco, "wssis_splits")
    files = split_file_names("train2017", pcfg.DATA.SPLIT_SEED, percent=pcfg.DATA.PERCENT)
    if all(os.path.isfile(os.path.join(split_dir, f)) for f in files.values()) or not os.path.isfile(source):
        return {}
    t0 = time.perf_counter()
    logger.info(f"Writing the {pcfg.DATA.PERCENT}% split of {source} to {split_dir} (a point per annotation "
                "from its mask: minutes on COCO)")
    write_wssis_splits(source, split_dir, seed=pcfg.DATA.SPLIT_SEED, percent=pcfg.DATA.PERCENT,
                       point_rule="centroid", image_root=os.path.join(coco, "train2017"), name="train2017")
    return {"split": round(time.perf_counter() - t0, 2)}


def _prepare_custom(pcfg) -> Dict[str, float]:
    """DATA.KIND custom: every given file exists, full and clicked images are disjoint, and the true masks
    of clicked images (POINTS_GT_JSON) are aligned to the clicks (``custom_gt_json``)."""
    c = pcfg.DATA.CUSTOM
    for key in ("FULL_JSON", "POINTS_JSON", "VAL_JSON", "POINTS_GT_JSON", "TRAIN_ALL_JSON"):
        if c[key] and not os.path.isfile(c[key]):
            raise FileNotFoundError(f"DATA.CUSTOM.{key} = {c[key]} does not exist")
    if not os.path.isdir(c.IMAGE_ROOT):
        raise FileNotFoundError(f"DATA.CUSTOM.IMAGE_ROOT = {c.IMAGE_ROOT} is not a directory")
    full, points = load_coco(c.FULL_JSON), load_coco(c.POINTS_JSON, "points")
    check_disjoint(full, points, (c.FULL_JSON, c.POINTS_JSON))
    if not c.POINTS_GT_JSON:
        logger.info("No DATA.CUSTOM.POINTS_GT_JSON: pseudo-label quality rows are skipped")
        return {}
    t0 = time.perf_counter()
    aligned = align_gt_to_clicks(load_coco(c.POINTS_GT_JSON), points, gt_name=c.POINTS_GT_JSON)
    write_json_atomic(aligned, custom_gt_json(pcfg))
    return {"align_points_gt": round(time.perf_counter() - t0, 2)}


def prepare_data(pcfg) -> dict:
    """The ``data`` stage: generate the shapes dataset if asked and missing (or the COCO split files when
    missing), register the names, check that every ``DATASETS`` entry has its file. Returns the stage
    result (json files; for shapes and custom, image and instance counts; for custom, ``scale_choice``)."""
    generated = {}
    if pcfg.DATA.KIND == "shapes" and pcfg.DATA.SHAPES.GENERATE:
        generated = _generate_shapes(pcfg)
    elif pcfg.DATA.KIND == "coco":
        generated = _coco_splits(pcfg)
    elif pcfg.DATA.KIND == "custom":
        generated = _prepare_custom(pcfg)
    register_datasets(pcfg)
    outputs, metrics = {}, {"generated_seconds": generated}
    for key, name in pcfg.DATASETS.items():
        if not name:  # DATA.KIND custom: a file the user does not have
            metrics[key.lower()] = None
            continue
        if name not in DatasetCatalog.list():
            raise KeyError(f"DATASETS.{key}: {name!r} is not registered (DATA.KIND {pcfg.DATA.KIND}, root "
                           f"{pcfg.DATA.ROOT})")
        json_file = dataset_json(name)
        if not os.path.isfile(json_file):
            hint = (" Set DATA.SHAPES.GENERATE True to generate it." if pcfg.DATA.KIND == "shapes" else
                    " See docs/DATA.md (datasets/prepare_wssis_splits.py).")
            raise FileNotFoundError(f"DATASETS.{key} = {name!r}: {json_file} does not exist.{hint}")
        outputs[key.lower()] = json_file
        if pcfg.DATA.KIND in ("shapes", "custom"):  # count images and instances for the results table
            coco = load_coco(json_file, "points" if MetadataCatalog.get(name).get("label_kind", None) == "points"
                             else "instances")  # checked before any stage trains on it
            metrics[key.lower()] = {"name": name, "images": len(coco["images"]),
                                    "instances": len(coco["annotations"])}
        else:
            metrics[key.lower()] = {"name": name}
    if pcfg.DATA.KIND == "custom":  # input scale and tiles from FULL_JSON's instance sizes (pipeline/scale.py)
        metrics["scale_choice"] = run_scale_choice(pcfg)
    return {"outputs": outputs, "metrics": metrics}
