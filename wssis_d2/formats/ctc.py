"""COCO instances json -> a Cell Tracking Challenge result folder (``--format ctc``), segmentation only.

(The challenge's ground truth is read by :mod:`wssis_d2.formats.label_images` / :mod:`.cells_psc`.)

The images of the json, **in json order**, are the frames 0..T-1 of one sequence (a json made by
``datasets/import_masks.py`` or ``prepare_cells_psc.py`` keeps the sequence's order). Written:

* ``maskTTT.tif`` for **every** frame (empty frames too), T zero-padded to a constant width (3 digits, more
  when T > 1000), 16-bit, 0 background: the flattened objects of the frame (:mod:`.flatten`, rule
  ``score`` by default; objects lost to overlaps counted and listed in ``ctc_info.json``, never silent);
* ``res_track.txt``: one one-frame track ``L t t 0`` per object (no tracking), L unique over the whole
  sequence: frame t's objects get ids after those of frames < t, in annotation order. A sequence with more
  than 65,535 objects in total does not fit the challenge's 16-bit ids: an error.

Check a folder with the challenge's own checker: ``ctc_validate --res <folder>`` (py-ctcmetrics), or
evaluate it with ``ctc_evaluate --gt <seq>_GT --res <folder> --seg``.
"""
import logging
import os
from collections import Counter
from typing import Optional

import numpy as np

from ..data.json_io import write_json_atomic
from ..utils.part_files import atomic_output
from .flatten import OVERLAP_RULES, flatten_objects
from .label_image_export import image_objects, write_label_image

__all__ = ["export_ctc", "frame_name"]

logger = logging.getLogger(__name__)

MAX_ID = 65535  # the challenge's 16-bit track labels


def frame_name(t: int, num_frames: int) -> str:
    """``mask%03d.tif`` (more digits when the sequence has more than 1000 frames)."""
    return f"mask{t:0{max(3, len(str(num_frames - 1)))}d}.tif"


def export_ctc(coco: dict, output_dir: str, image_root: Optional[str] = None, *, overlap: str = "score") -> Counter:
    """Write the RES folder ``output_dir`` (module docstring). Returns the counts."""
    if overlap not in OVERLAP_RULES:
        raise ValueError(f"unknown overlap rule {overlap!r}; choose from {list(OVERLAP_RULES)}")
    by_image = {img["id"]: [] for img in coco["images"]}
    for a in coco["annotations"]:
        by_image[a["image_id"]].append(a)
    n_frames = len(coco["images"])
    counts, lost_ids, tracks, next_id = Counter(), {}, [], 1
    frames = []
    for t, img in enumerate(coco["images"]):
        anns = by_image[img["id"]]
        pixels, clicks, scores = image_objects(img, anns)
        flat = flatten_objects(pixels, (img["height"], img["width"]), scores=scores, clicks=clicks, rule=overlap)
        n = int(flat["ids"].max(initial=0))
        if next_id - 1 + n > MAX_ID:
            raise ValueError(f"frame {t} ({img['file_name']}): more than {MAX_ID} objects in the sequence; Cell "
                             "Tracking Challenge track labels are 16-bit (split the sequence)")
        labels = flat["labels"].astype(np.uint16)
        labels[labels > 0] += np.uint16(next_id - 1)
        frames.append((frame_name(t, n_frames), labels))
        tracks += [f"{next_id + k} {t} {t} 0" for k in range(n)]
        next_id += n
        has_mask = np.array([len(p) > 0 for p in pixels], bool)
        lost = flat["lost"] & has_mask
        if lost.any():
            lost_ids[img["file_name"]] = [anns[k]["id"] for k in np.flatnonzero(lost)]
        counts["frames"] += 1
        counts["objects"] += int(has_mask.sum())
        counts["objects lost to overlaps"] += int(lost.sum())
    for name, labels in frames:
        write_label_image(labels, os.path.join(output_dir, name))
    with atomic_output(os.path.join(output_dir, "res_track.txt")) as f:
        f.write("".join(line + "\n" for line in tracks))
    counts["tracks"] = len(tracks)
    write_json_atomic({"overlap_rule": overlap, "frames": [img["file_name"] for img in coco["images"]],
                       "counts": dict(counts), "lost_annotation_ids": lost_ids},
                      os.path.join(output_dir, "ctc_info.json"), indent=1)
    if counts["objects lost to overlaps"]:
        logger.warning(f"{counts['objects lost to overlaps']} objects lost to overlaps (rule {overlap!r}); their "
                       f"annotation ids are in {os.path.join(output_dir, 'ctc_info.json')}")
    logger.info(f"Cell Tracking Challenge RES folder {output_dir}: {dict(counts)}")
    return counts
