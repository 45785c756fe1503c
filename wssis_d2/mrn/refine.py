"""Refinement stage: every mask of a pseudo-label json through a trained MaskRefineNet.

Per image: load it (detectron2's ``read_image`` in INPUT.FORMAT, the teacher's loader), decode the
coarse masks, :meth:`MaskRefineNet.refine` them (crops of ``MODEL.MRN.BOX_SCALE``, batches of
``MODEL.MRN.REFINE_BATCH_SIZE``, paste back, the coarse mask kept where the refined one is empty),
re-encode as compressed RLE and recompute ``bbox`` and ``area``. Every other field is kept; each
annotation gets ``"refined"``: True, or False where the coarse mask was kept. ``info["mrn_refinement"]``
records the weights, the counts and the throughput.

Processes (detectron2 ``launch``): the images still to do are split by rank (``pending[rank::world]``);
each rank appends one json line per finished image to ``<output>.parts/rank<r>.jsonl`` (flushed per
image); the main process merges the parts into the output json (written atomically) and removes them.
Resume: an interrupted run leaves the parts; the next run reads them all first, skips the images they
hold (whatever the previous world size) and drops a rank file's incomplete last line before appending,
so no image is refined or written twice. A complete output is left alone unless ``overwrite``.
Part files: :mod:`wssis_d2.utils.part_files`, shared with the pseudo-label export.

Class index of an annotation: :func:`wssis_d2.data.categories.contiguous_category_map` of the json's
categories, the rule the MRN training data uses.
"""
import glob
import logging
import os
import shutil
import time
from collections import defaultdict
from typing import Dict, List, Optional, Sequence

import numpy as np
import pycocotools.mask as mask_util
import torch

import detectron2.utils.comm as comm

from ..data.categories import contiguous_category_map
from ..data.coco_masks import decode_segmentation, encode_masks
from ..data.json_io import load_json, write_json_atomic
from ..utils.part_files import open_part, read_records, write_record
from ..data.validation import load_coco
from ..utils.errors import WSSISInputError
from .dataset_mapper import read_mrn_image

__all__ = [
    "output_is_complete",
    "parts_dir_for",
    "read_parts",
    "shard_images",
    "refine_image_annotations",
    "refine_shard",
    "merge_parts",
    "refine_pseudo_labels",
]

logger = logging.getLogger(__name__)


def parts_dir_for(output: str) -> str:
    """Directory of the per-rank part files of ``output``."""
    return os.fspath(output) + ".parts"


def output_is_complete(output: str, pseudo: Optional[dict] = None) -> bool:
    """True when ``output`` is a finished refinement (of ``pseudo``, if given: same annotation count)."""
    if not os.path.isfile(output):
        return False
    try:
        data = load_json(output)
    except ValueError:
        return False
    rec = (data.get("info") or {}).get("mrn_refinement") or {}
    if not rec.get("complete"):
        return False
    return pseudo is None or len(data.get("annotations", [])) == len(pseudo["annotations"])


def read_parts(parts_dir: str) -> Dict[int, dict]:
    """Finished images of all part files: image id -> record. Incomplete last lines are ignored; an
    image found twice keeps its first record (with a warning)."""
    paths = sorted(glob.glob(os.path.join(parts_dir, "rank*.jsonl")))
    return {rec["image_id"]: rec for rec in read_records(paths)}


def shard_images(image_ids: Sequence[int], rank: int, world_size: int) -> List[int]:
    """The images rank ``rank`` of ``world_size`` refines: every world_size-th, from the rank's."""
    return list(image_ids)[rank::world_size]


def refine_image_annotations(model, image: torch.Tensor, annotations: Sequence[dict],
                             id_map: Dict[int, int]) -> List[dict]:
    """Refine the annotations of one image.

    Args:
        model: a :class:`MaskRefineNet` in eval mode.
        image: (3, H, W) uint8, INPUT.FORMAT channel order.
        annotations: pseudo-label annotations of the image (``segmentation`` RLE, ``point``,
            ``category_id`` original id).
        id_map: original category id -> contiguous class index.

    Returns:
        new annotations in the same order: ``segmentation``, ``bbox``, ``area`` recomputed, ``refined``
        added, other fields kept.
    """
    if not annotations:
        return []
    h, w = image.shape[-2:]
    coarse = torch.from_numpy(np.stack([decode_segmentation(a["segmentation"], h, w) for a in annotations]))
    points = torch.tensor([a["point"] for a in annotations], dtype=torch.float32)
    classes = torch.tensor([id_map[a["category_id"]] for a in annotations], dtype=torch.long)
    masks, _, refined = model.refine(image, coarse, points, classes, return_refined=True)
    masks = masks.cpu().numpy()
    rles = encode_masks(masks)
    bboxes = mask_util.toBbox(rles).tolist() if rles else []
    # pixel counts from the masks: pycocotools 2.0.x's area() overflows beyond 255 RLEs under numpy 2
    areas = masks.reshape(len(masks), -1).sum(axis=1).tolist()
    out = []
    for a, rle, box, area, ok in zip(annotations, rles, bboxes, areas, refined.tolist()):
        b = dict(a)
        b.update(segmentation=rle, bbox=[float(v) for v in box], area=float(area), refined=bool(ok))
        out.append(b)
    return out


def _check_pseudo(pseudo: dict, where: str, model) -> Dict[int, int]:
    ids = [a["id"] for a in pseudo["annotations"]]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{where}: annotation ids are not unique")
    id_map = contiguous_category_map(pseudo["categories"])
    if model.heatmap_mode == "classwise" and len(id_map) != model.num_classes:
        raise ValueError(f"{where} has {len(id_map)} categories but the MRN was built for "
                         f"MODEL.MRN.NUM_CLASSES = {model.num_classes}")
    images = {img["id"] for img in pseudo["images"]}
    for a in pseudo["annotations"]:
        if a["image_id"] not in images:
            raise ValueError(f"{where}: annotation {a['id']} refers to unknown image {a['image_id']}")
        if a["category_id"] not in id_map:
            raise ValueError(f"{where}: annotation {a['id']} has unknown category {a['category_id']}")
        if "point" not in a or not isinstance(a.get("segmentation"), dict):
            raise ValueError(f"{where}: annotation {a['id']} needs an RLE 'segmentation' and a 'point'")
    return id_map


def refine_shard(model, pseudo: dict, image_ids: Sequence[int], image_root: str, part_file: str, *,
                 image_format: str, id_map: Dict[int, int], log_period: int = 100,
                 skip_bad_images: bool = False) -> dict:
    """Refine the images ``image_ids`` and append one json line per image to ``part_file``.

    An image that cannot be read raises ``WSSISInputError`` naming it and its id; with ``skip_bad_images``
    its coarse masks are kept instead (``"refined"`` False), with a warning, counted in "bad_images".

    Returns:
        {"images", "instances", "refined", "kept_coarse", "bad_images", "seconds"} of this call.
    """
    images = {img["id"]: img for img in pseudo["images"]}
    by_image = defaultdict(list)
    for a in pseudo["annotations"]:
        by_image[a["image_id"]].append(a)
    stats = {"images": 0, "instances": 0, "refined": 0, "kept_coarse": 0, "bad_images": 0, "seconds": 0.0}
    t0 = time.perf_counter()
    with open_part(part_file, resume=True) as f:
        for k, image_id in enumerate(image_ids, 1):
            img = images[image_id]
            path = os.path.join(image_root, img["file_name"])
            try:
                image = read_mrn_image(path, image_format, image_id)
            except WSSISInputError as e:
                if not skip_bad_images:
                    raise
                stats["bad_images"] += 1
                logger.warning(f"coarse masks kept ({stats['bad_images']} bad images so far): {e}")
                image = None
            if image is not None and tuple(image.shape[-2:]) != (img["height"], img["width"]):
                raise WSSISInputError(f"{path} (image id {image_id}): image is {tuple(image.shape[-2:])}, the json "
                                      f"says {(img['height'], img['width'])}")
            anns = (refine_image_annotations(model, image, by_image[image_id], id_map) if image is not None
                    else [dict(a, refined=False) for a in by_image[image_id]])
            n_ref = sum(a["refined"] for a in anns)
            write_record(f, {"image_id": image_id, "annotations": anns})
            stats["images"] += 1
            stats["instances"] += len(anns)
            stats["refined"] += n_ref
            stats["kept_coarse"] += len(anns) - n_ref
            if log_period and (k % log_period == 0 or k == len(image_ids)):
                dt = time.perf_counter() - t0
                logger.info(f"[rank {comm.get_rank()}] {k}/{len(image_ids)} images, "
                            f"{stats['instances']} instances, {stats['instances'] / max(dt, 1e-9):.1f} "
                            f"instances/s, {stats['kept_coarse']} kept coarse")
    stats["seconds"] = time.perf_counter() - t0
    return stats


def merge_parts(pseudo: dict, parts_dir: str, output: str, info: dict) -> dict:
    """Write the output json from the parts (atomically): the input's images and categories, its
    annotations in their original order replaced by the refined ones, ``info["mrn_refinement"]``
    = ``info`` plus the counts. Raises if an image with annotations has no part record.

    Returns:
        the counts written.
    """
    done = read_parts(parts_dir)
    refined = {}
    for rec in done.values():
        for a in rec["annotations"]:
            refined[a["id"]] = a
    missing = sorted({a["image_id"] for a in pseudo["annotations"] if a["id"] not in refined})
    if missing:
        raise RuntimeError(f"{len(missing)} images are not refined yet (e.g. {missing[:5]}); rerun to "
                           "resume")
    anns = [refined[a["id"]] for a in pseudo["annotations"]]
    n_ref = sum(bool(a["refined"]) for a in anns)
    counts = {"num_images": len(pseudo["images"]), "num_annotations": len(anns), "num_refined": n_ref,
              "num_kept_coarse": len(anns) - n_ref, "complete": True}
    out = {k: v for k, v in pseudo.items() if k != "annotations"}
    out["info"] = dict(pseudo.get("info") or {})
    out["info"]["mrn_refinement"] = dict(info, **counts)
    out["annotations"] = anns
    write_json_atomic(out, output)
    return counts


def refine_pseudo_labels(model, pseudo_json: str, output: str, *, image_root: Optional[str] = None,
                         image_format: str = "BGR", overwrite: bool = False, log_period: int = 100,
                         info: Optional[dict] = None, skip_bad_images: bool = False) -> dict:
    """Refine a pseudo-label json into ``output`` (see the module docstring); call it on every rank.

    Args:
        model: a :class:`MaskRefineNet` (put in eval mode here) with trained weights.
        pseudo_json: input json path.
        output: output json path.
        image_root: default: the json's ``info["image_root"]``.
        image_format: INPUT.FORMAT of the MRN.
        overwrite: redo a complete output and discard earlier parts.
        log_period: log progress every this many images (per rank).
        info: extra fields for ``info["mrn_refinement"]`` (e.g. weights, config).
        skip_bad_images: keep the coarse masks of an image that cannot be read (counted) instead of failing.

    Returns:
        {"skipped": bool, "output", this rank's "images", "instances", "refined", "kept_coarse",
        "seconds", "instances_per_s"; on the main process also the merged counts}.
    """
    pseudo = load_coco(pseudo_json, "pseudo")
    image_root = image_root or (pseudo.get("info") or {}).get("image_root")
    if not image_root:
        raise ValueError(f"{pseudo_json}: no image root (info['image_root'] is missing; pass --image-root)")
    id_map = _check_pseudo(pseudo, pseudo_json, model)
    parts_dir = parts_dir_for(output)
    if not overwrite and output_is_complete(output, pseudo):
        logger.info(f"{output} is complete already; nothing to do (use overwrite to redo it)")
        return {"skipped": True, "output": output}
    comm.synchronize()
    if overwrite and comm.is_main_process() and os.path.isdir(parts_dir):
        shutil.rmtree(parts_dir)
    comm.synchronize()
    done = read_parts(parts_dir)
    comm.synchronize()  # every rank has read the same parts before anyone appends
    order = list(dict.fromkeys(a["image_id"] for a in pseudo["annotations"]))  # images with instances
    pending = [i for i in order if i not in done]
    rank, world = comm.get_rank(), comm.get_world_size()
    mine = shard_images(pending, rank, world)
    logger.info(f"Refining {pseudo_json}: {len(order)} images with instances, {len(done)} done earlier, "
                f"{len(pending)} to do, {len(mine)} on rank {rank}/{world}")
    model.eval()
    stats = refine_shard(model, pseudo, mine, image_root, os.path.join(parts_dir, f"rank{rank}.jsonl"),
                         image_format=image_format, id_map=id_map, log_period=log_period,
                         skip_bad_images=skip_bad_images)
    stats["instances_per_s"] = stats["instances"] / stats["seconds"] if stats["seconds"] else 0.0
    all_stats = comm.gather(stats, dst=0)
    result = dict(stats, skipped=False, output=output)
    if comm.is_main_process():
        seconds = max(s["seconds"] for s in all_stats)
        instances = sum(s["instances"] for s in all_stats)
        run = {"input": os.path.abspath(pseudo_json), "image_root": image_root,
               "world_size": world, "resumed_images": len(done), "seconds_this_run": round(seconds, 3),
               "bad_images_this_run": sum(s["bad_images"] for s in all_stats),
               "instances_per_s_this_run": round(instances / seconds, 3) if seconds else None}
        counts = merge_parts(pseudo, parts_dir, output, dict(info or {}, **run))
        shutil.rmtree(parts_dir, ignore_errors=True)
        result.update(counts)
        result["instances_per_s_all_ranks"] = run["instances_per_s_this_run"]
        logger.info(f"Wrote {output}: {counts['num_annotations']} annotations, {counts['num_refined']} "
                    f"refined, {counts['num_kept_coarse']} kept coarse (refined mask empty); "
                    f"{instances} instances in {seconds:.1f} s this run "
                    f"({run['instances_per_s_this_run'] or 0:.1f} instances/s)")
    comm.synchronize()
    return result
