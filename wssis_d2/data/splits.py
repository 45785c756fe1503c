"""Split a COCO instances dataset into fully-labeled and point-labeled images (PointWSSIS setting).

Three outputs, all COCO-style jsons with the source's ``images`` subset, ``categories`` and
``licenses``:

* ``<name>_<p>p_s<seed>_full.json``: the fully-labeled images with all their annotations, unchanged
  (but for the masks that cannot be used, below).
* ``<name>_<p>p_s<seed>_points.json``: the other images; each annotation reduced to ``id``,
  ``image_id``, ``category_id``, ``point_coords`` ([[x, y]]), ``point_labels`` ([1]) and ``iscrowd``
  (0). No ``segmentation``, ``bbox`` or ``area``. A point annotation keeps the ``id`` of the annotation
  it came from.
* ``<name>_<p>p_s<seed>_points_gt.json``: the same point images with their true annotations, for
  evaluating pseudo-labels only.

Rules:
* Images are sampled per image, seeded, without replacement: the image ids sorted ascending are
  permuted by ``np.random.default_rng(seed).permutation`` and the first ``count`` are fully labeled.
  Every image is in exactly one of the two sets.
* ``count = max(1, floor(percent / 100 * N + 0.5))`` (round half up, at least one full image), or
  ``count`` given directly.
* Points are in continuous pixel coordinates (pixel (i, j) has centre (j + 0.5, i + 0.5)), placed by a
  rule of :mod:`wssis_d2.data.point_rules`.
* Crowd annotations (``iscrowd`` 1) are left out of the points file: a crowd region is many objects
  and cannot be clicked as one. They stay in points_gt with ``iscrowd`` 1, so that COCO evaluation
  ignores detections on them as usual.
* Masks that cannot be used are dropped first, from every output, counted in the log and in ``info``
  (``dropped_degenerate_polygons``, ``dropped_empty_mask_annotations``): polygons of fewer than 3 points
  (the rest of the instance kept) and annotations left with an empty mask (``[]``, no valid polygon, an
  RLE with no pixel); :func:`wssis_d2.data.coco_masks.clean_segmentations`.
* Images without annotations stay in their set (a full image with no object, a point image with no
  click): they are valid negatives of the split, whatever the training then does with them.
* An annotation whose mask rasterises to no pixel cannot get a point: it is left out of the points
  file (kept in points_gt) and its id is listed in ``info["no_point_annotation_ids"]``.
* Pass-through: a source annotation that already has ``point_coords`` and no ``segmentation``
  (PointSup style, possibly several points with 0/1 labels) keeps its points as they are. If no
  point image has a mask, there is nothing to evaluate against and no points_gt is produced.

A sequence (frames of a time-lapse, e.g. label images imported by :mod:`wssis_d2.formats.label_images`) is
split by frame ranges instead, unsampled (:func:`split_sequence`): full / points / points_gt / test /
train_all.
"""
import math
import os

import numpy as np

from .coco_masks import clean_segmentations, decode_segmentation, log_cleaned
from .json_io import write_json_atomic
from .validation import load_coco
from .point_rules import POINT_RULES, sample_point

__all__ = [
    "split_count",
    "split_image_ids",
    "validate_coco",
    "point_annotation",
    "split_annotations",
    "subset",
    "make_wssis_splits",
    "split_file_names",
    "write_wssis_splits",
    "SEQUENCE_OUTPUTS",
    "split_sequence",
]

TOOL = "wssis_d2.data.splits (datasets/prepare_wssis_splits.py)"
SEQUENCE_OUTPUTS = ("full", "points", "points_gt", "test", "train_all")  # and "val" with a "val" range
COUNT_RULE = "count = max(1, floor(percent / 100 * N + 0.5))"


def split_count(num_images, percent=None, count=None):
    """Number of fully-labeled images: ``count`` itself, or ``COUNT_RULE`` applied to ``percent``."""
    if (percent is None) == (count is None):
        raise ValueError("Give exactly one of percent and count")
    if num_images < 1:
        raise ValueError("Cannot split a dataset without images")
    if count is None:
        if not 0 < percent <= 100:
            raise ValueError(f"percent must be in (0, 100], got {percent}")
        count = max(1, int(math.floor(percent / 100.0 * num_images + 0.5)))
    if not 1 <= count <= num_images:
        raise ValueError(f"count must be in [1, {num_images}] (the number of images), got {count}")
    return count


def split_image_ids(image_ids, *, percent=None, count=None, seed):
    """Choose the fully-labeled images, without replacement.

    Args:
        image_ids (iterable[int]): unique image ids.
        percent (float) or count (int): size of the full set (see ``split_count``).
        seed (int): seed of ``np.random.default_rng``.

    Returns:
        (full_ids, point_ids): two sorted lists partitioning ``image_ids``.
    """
    ids = np.array(sorted(image_ids), dtype=np.int64)
    if len(np.unique(ids)) != len(ids):
        raise ValueError("image ids are not unique")
    n_full = split_count(len(ids), percent=percent, count=count)
    order = np.random.default_rng(seed).permutation(len(ids))
    full = np.sort(ids[order[:n_full]])
    points = np.sort(ids[order[n_full:]])
    return full.tolist(), points.tolist()


def _where(json_file, ann):
    return f"{json_file}: annotation id {ann.get('id')} (image id {ann.get('image_id')})"


def validate_coco(coco, json_file):
    """Check the structure PointWSSIS splits rely on; raise ValueError naming the file and ids.

    Checks: ``images``, ``annotations`` and ``categories`` lists; unique image, annotation and
    category ids; every annotation's ``image_id`` and ``category_id`` exist; image sizes present.
    """
    for key in ("images", "annotations", "categories"):
        if not isinstance(coco.get(key), list):
            raise ValueError(f"{json_file}: missing or invalid '{key}' list (not a COCO instances json?)")
    image_ids = [img.get("id") for img in coco["images"]]
    if len(set(image_ids)) != len(image_ids):
        raise ValueError(f"{json_file}: duplicate image ids")
    for img in coco["images"]:
        if not all(k in img for k in ("file_name", "height", "width")):
            raise ValueError(f"{json_file}: image id {img.get('id')} lacks file_name, height or width")
    cat_ids = {c["id"] for c in coco["categories"]}
    if len(cat_ids) != len(coco["categories"]):
        raise ValueError(f"{json_file}: duplicate category ids")
    ann_ids = [ann.get("id") for ann in coco["annotations"]]
    if None in ann_ids or len(set(ann_ids)) != len(ann_ids):
        raise ValueError(f"{json_file}: annotation ids missing or not unique (points and points_gt "
                         "are matched by annotation id)")
    image_ids = set(image_ids)
    for ann in coco["annotations"]:
        if ann.get("image_id") not in image_ids:
            raise ValueError(f"{_where(json_file, ann)}: image_id not in the file's images")
        if ann.get("category_id") not in cat_ids:
            raise ValueError(f"{_where(json_file, ann)}: category_id {ann.get('category_id')} not in "
                             f"categories {sorted(cat_ids)}")


def _given_points(ann, json_file):
    """Validated copy of a pass-through annotation's points: (point_coords, point_labels)."""
    coords, labels = ann["point_coords"], ann.get("point_labels", [1] * len(ann["point_coords"]))
    arr = np.asarray(coords, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2 or len(labels) != len(arr) or not np.isfinite(arr).all():
        raise ValueError(f"{_where(json_file, ann)}: point_coords must be [[x, y], ...] with one "
                         f"point_labels entry each, got {coords!r} / {labels!r}")
    if 1 not in labels:
        raise ValueError(f"{_where(json_file, ann)}: no positive point (point_labels {labels!r})")
    return arr.tolist(), [int(v) for v in labels]


def point_annotation(ann, image, rule, seed, json_file="<json>"):
    """The point annotation of one non-crowd source annotation, or None if its mask is empty.

    Args:
        ann (dict): COCO annotation with a ``segmentation`` or (pass-through) ``point_coords``.
        image (dict): its COCO image (``height``, ``width``).
        rule (str): point rule (``POINT_RULES``); ``random`` is seeded by (seed, ann["id"]).
        seed (int): split seed.

    Returns:
        dict with ``id``, ``image_id``, ``category_id``, ``point_coords`` [[x, y]] (continuous pixel
        coordinates), ``point_labels`` [1], ``iscrowd`` 0; or None.
    """
    out = {"id": ann["id"], "image_id": ann["image_id"], "category_id": ann["category_id"]}
    if "segmentation" not in ann:
        if "point_coords" not in ann:
            raise ValueError(f"{_where(json_file, ann)}: no segmentation, and point rule {rule!r} "
                             "needs a mask (or give point_coords)")
        out["point_coords"], out["point_labels"] = _given_points(ann, json_file)
    else:
        try:
            mask = decode_segmentation(ann["segmentation"], image["height"], image["width"])
        except ValueError as e:
            raise ValueError(f"{_where(json_file, ann)}: bad segmentation: {e}") from e
        if not mask.any():
            return None
        x, y = sample_point(mask, rule, seed=seed, ann_id=ann["id"])
        out["point_coords"], out["point_labels"] = [[x, y]], [1]
    out["iscrowd"] = 0
    return out


def split_annotations(images, annotations, full_ids, *, point_rule, seed, json_file="<json>"):
    """Sort annotations into the full set and the point set (module docstring's rules).

    Args:
        images (list[dict]): COCO images (``id``, ``height``, ``width``).
        annotations (list[dict]): cleaned annotations (``clean_segmentations``).
        full_ids (iterable[int]): the fully-labeled image ids; every other image is a point image.
        point_rule (str), seed (int): see :func:`point_annotation`.

    Returns:
        (full annotations, point images' true annotations (points_gt), point annotations, ids of the
        annotations whose mask has no pixel).
    """
    full_set = set(full_ids)
    images = {img["id"]: img for img in images}
    full_anns, gt_anns, point_anns, no_point = [], [], [], []
    for ann in annotations:
        if ann["image_id"] in full_set:
            if "segmentation" not in ann:
                raise ValueError(f"{_where(json_file, ann)}: a fully-labeled image needs masks, this "
                                 "annotation has no segmentation")
            full_anns.append(ann)
            continue
        gt_anns.append(ann)
        if ann.get("iscrowd", 0):
            continue  # crowd regions are not clickable objects: points_gt only
        pt = point_annotation(ann, images[ann["image_id"]], point_rule, seed, json_file)
        if pt is None:
            no_point.append(ann["id"])
        else:
            point_anns.append(pt)
    return full_anns, gt_anns, point_anns, no_point


def subset(coco, image_ids, annotations, info):
    """A COCO dict of ``coco``'s images ``image_ids`` (in its order) with ``annotations``, its categories and
    licenses, and ``info``."""
    keep = set(image_ids)
    return {
        "info": info,
        "licenses": coco.get("licenses", []),
        "images": [img for img in coco["images"] if img["id"] in keep],
        "annotations": annotations,
        "categories": coco["categories"],
    }


def make_wssis_splits(coco, *, json_file, seed, point_rule="centroid", percent=None, count=None,
                      image_root=None):
    """Build the full / points / points_gt datasets from a loaded COCO instances dict.

    Args:
        coco (dict): COCO instances json content (validated with ``validate_coco``).
        json_file (str): its path, recorded in ``info`` and named in errors.
        seed (int), percent (float) or count (int): see ``split_image_ids``.
        point_rule (str): one of ``POINT_RULES``.
        image_root (str or None): recorded in ``info``.

    Returns:
        dict with keys "full", "points", "points_gt" (the latter None when no point image has a mask).
    """
    if point_rule not in POINT_RULES:
        raise ValueError(f"Unknown point rule {point_rule!r}; choose one of {POINT_RULES}")
    validate_coco(coco, json_file)
    annotations, dropped = clean_segmentations(coco["annotations"])  # degenerate polygons, empty masks
    log_cleaned(dropped, json_file)
    full_ids, point_ids = split_image_ids([img["id"] for img in coco["images"]],
                                          percent=percent, count=count, seed=seed)
    full_anns, gt_anns, point_anns, no_point = split_annotations(coco["images"], annotations, full_ids,
                                                                 point_rule=point_rule, seed=seed,
                                                                 json_file=json_file)
    info = {
        "tool": TOOL,
        "source": os.path.abspath(json_file),
        "source_info": coco.get("info", {}),
        "image_root": image_root,
        "percent": percent,
        "count": len(full_ids),
        "count_rule": COUNT_RULE if percent is not None else "given",
        "seed": seed,
        "sampling": "np.random.default_rng(seed).permutation of sorted image ids, first count = full",
        "point_rule": point_rule,
        "point_convention": "continuous pixel coordinates: pixel (row i, col j) centre = (j + 0.5, i + 0.5)",
        "num_full_images": len(full_ids),
        "num_point_images": len(point_ids),
        "no_point_annotation_ids": no_point,
        "dropped_degenerate_polygons": dropped["degenerate_polygons"],
        "dropped_empty_mask_annotations": dropped["empty_masks"],
    }
    has_gt = any("segmentation" in a for a in gt_anns) or not gt_anns
    return {
        "full": subset(coco, full_ids, full_anns, dict(info, subset="full")),
        "points": subset(coco, point_ids, point_anns, dict(info, subset="points")),
        "points_gt": subset(coco, point_ids, gt_anns, dict(info, subset="points_gt")) if has_gt else None,
    }


def split_file_names(name, seed, percent=None, count=None):
    """File names {"full", "points", "points_gt"} -> ``<name>_<p>p_s<seed>_<kind>.json`` (``<c>n``
    instead of ``<p>p`` when a count is given)."""
    if percent is not None:
        tag = f"{percent:g}p"
    else:
        tag = f"{count}n"
    return {kind: f"{name}_{tag}_s{seed}_{kind}.json" for kind in ("full", "points", "points_gt")}


def write_wssis_splits(json_file, output_dir, *, seed, percent=None, count=None, point_rule="centroid",
                       image_root=None, name=None):
    """Load ``json_file``, build the splits and write them atomically into ``output_dir``.

    ``name`` defaults to the json file name without extension. Returns {kind: path} of the files
    written (no "points_gt" entry when it is not produced).
    """
    coco = load_coco(json_file)
    splits = make_wssis_splits(coco, json_file=json_file, seed=seed, point_rule=point_rule,
                               percent=percent, count=count, image_root=image_root)
    name = name or os.path.splitext(os.path.basename(json_file))[0]
    paths = {}
    for kind, fname in split_file_names(name, seed, percent, count).items():
        if splits[kind] is not None:
            paths[kind] = write_json_atomic(splits[kind], os.path.join(output_dir, fname))
    return paths


def split_sequence(coco, split_frames, *, point_rule="centroid", info=None, json_file="<sequence>"):
    """The :data:`SEQUENCE_OUTPUTS` of a sequence's COCO dict, split by frame ranges (no sampling).

    Frame ``k`` is the ``k``-th image of ``coco["images"]`` (a :func:`~wssis_d2.formats.label_images.labels_to_coco`
    dict: image id ``k + 1``). Outputs: ``full`` (the "full" frames, masks), ``points`` (the "points" frames,
    one click per annotation by ``point_rule``, keeping the annotation's id) and ``points_gt`` (their masks),
    ``test`` (the "test" frames, masks), ``train_all`` (full + points frames, masks) and, when
    ``split_frames`` has a "val" range, ``val`` (those frames, masks: for choosing settings, ``test`` for
    reporting). Images outside every range are in no output.

    Args:
        coco: COCO instances dict with masks (cleaned: every mask has a pixel).
        split_frames: {"full", "points", "test"[, "val"]: (first frame, last frame + 1)}; disjoint ranges.
        point_rule: a rule of :data:`~wssis_d2.data.point_rules.POINT_RULES` (seed 0 for random rules).
        info: added to every output's ``info`` (over the source's ``info`` less its counts).
        json_file: names the source in errors.

    Returns:
        {name: COCO dict}; each ``info`` has ``subset``, ``frames`` ([first, last] or []), ``split_frames``,
        ``num_images``, ``num_annotations``; the points output ``point_rule`` / ``point_convention``, the
        others the source's multi-piece label ids among their annotations (``multi_piece_annotation_ids``,
        ``num_multi_piece_labels``).

    Raises:
        ValueError: a range is missing, empty or overlaps another; an annotation without a pixel to click.
    """
    ranges = {k: tuple(int(v) for v in split_frames[k]) if k in split_frames else None
              for k in ("full", "points", "test") + (("val",) if "val" in split_frames else ())}
    bad = [k for k, r in ranges.items() if r is None or len(r) != 2 or not 0 <= r[0] < r[1]]
    if bad:
        raise ValueError(f"split_frames needs non-empty ranges (first, last + 1) for {bad}, got {split_frames}")
    spans = sorted(ranges.values())
    if any(a[1] > b[0] for a, b in zip(spans, spans[1:])):
        raise ValueError(f"split_frames overlap: {split_frames}")
    frames = {name: [img["id"] for k, img in enumerate(coco["images"]) if lo <= k < hi]
              for name, (lo, hi) in ranges.items()}
    position = {img["id"]: k for k, img in enumerate(coco["images"])}
    train_ids = sorted(set(frames["full"]) | set(frames["points"]), key=position.get)
    by_image = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    train_anns = [a for i in train_ids for a in by_image.get(i, [])]
    full_anns, gt_anns, point_anns, no_point = split_annotations(
        coco["images"], train_anns, frames["full"], point_rule=point_rule, seed=0, json_file=json_file)
    if no_point:
        raise ValueError(f"{json_file}: annotations {no_point[:5]} have no pixel to click")
    multi_piece = set(coco.get("info", {}).get("multi_piece_annotation_ids", []))
    source_info = {k: v for k, v in coco.get("info", {}).items() if not k.startswith(("num_", "multi_piece"))}
    source_info.update(tool=TOOL)
    source_info.update(info or {})
    image_ids = {"full": frames["full"], "points": frames["points"], "points_gt": frames["points"],
                 "test": frames["test"], "train_all": train_ids}
    anns = {"full": full_anns, "points": point_anns, "points_gt": gt_anns,
            "test": [a for i in frames["test"] for a in by_image.get(i, [])], "train_all": train_anns}
    if "val" in frames:
        image_ids["val"] = frames["val"]
        anns["val"] = [a for i in frames["val"] for a in by_image.get(i, [])]
    out = {}
    for name in image_ids:
        ids = image_ids[name]
        out_info = dict(source_info, subset=name,
                        frames=[position[ids[0]], position[ids[-1]]] if ids else [],
                        split_frames={k: list(v) for k, v in ranges.items()},
                        num_images=len(ids), num_annotations=len(anns[name]))
        if name == "points":
            out_info.update(point_rule=point_rule, point_convention="continuous pixel coordinates: pixel (row i, "
                            "col j) centre = (j + 0.5, i + 0.5)")
        else:
            out_info["multi_piece_annotation_ids"] = [a["id"] for a in anns[name] if a["id"] in multi_piece]
            out_info["num_multi_piece_labels"] = len(out_info["multi_piece_annotation_ids"])
        out[name] = subset(coco, ids, anns[name], out_info)
    return out
