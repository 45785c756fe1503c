"""A pipeline run on few fully-labelled objects (issue 35): MaskRefineNet samples when the teacher gives too few,
the MaskRefineNet skipped when there is none, and the summary of what was missing.

* :func:`mrn_sample_jsons` (stage ``mrn_data``): the teacher's predictions on the FULL images paired with
  their masks (``make_mrn_sample_jsons``). Fewer training samples than ``MRN.MIN_SAMPLES``:
  ``MRN.FEW_SAMPLES`` "synthetic" tops them up with the full masks corrupted by erosion / dilation / shift
  (``mrn/synthetic.py``: ``synthetic_<k>.json``, one copy of every full mask each, seeds 0, 1, ...) up to
  MIN_SAMPLES; "skip" (or no full mask at all) leaves ``mrn_train`` out and says why.
* :func:`skip_mrn` and :func:`unrefined`: the ``mrn`` stage without training samples, and
  ``pseudo_adaptive_mrn`` after it (the adaptive pseudo-labels as they are, ``info["mrn_skipped"]``).
* :func:`teacher_found`: the full objects the teacher found (IoU >= 0.5) at each checkpoint.
* :func:`click_round_line`: results.md's line on the click round (``PSEUDO.CLICK_ROUND``, stage_table.py).
* :func:`few_label_summary`: lines for results.md / results.json ``few_labels`` and the end of the run's log:
  what was missing (too few full objects, a teacher that found few of them, clicks without a pseudo-mask,
  pseudo-masks that miss their own click, MaskRefineNet topped up or skipped) and what more labelling would
  likely help.
"""
import logging
import math
import os
from collections import defaultdict
from typing import Dict, List, Mapping, Sequence

from ..data.json_io import load_json, write_json_atomic
from ..data.scale_choice import MIN_INSTANCES
from ..mrn.samples import make_mrn_sample_jsons
from ..mrn.synthetic import make_corrupted_pseudo_json

__all__ = ["FOUND_IOU", "click_round_line", "few_label_summary", "mrn_sample_jsons", "skip_mrn", "teacher_found",
           "unrefined"]

logger = logging.getLogger(__name__)

# A full object counts as found by the teacher when its coarse mask has at least this IoU with the true mask.
FOUND_IOU = 0.5
# Below this share of the full objects found (last MRN checkpoint) or of the clicks with a pseudo-mask, the
# summary says that the teacher lacks signal.
WEAK_SHARE = 0.5


def teacher_found(samples: Sequence[dict], sources: Sequence[str]) -> Dict[str, int]:
    """{source name: full objects (distinct ``gt_ann_id``) whose sample has IoU >= FOUND_IOU} of MRN samples
    (``pair_mrn_samples`` fields ``source``, ``gt_ann_id``, ``iou``)."""
    found = defaultdict(set)
    for s in samples:
        if s["iou"] >= FOUND_IOU:
            found[s["source"]].add(s["gt_ann_id"])
    return {name: len(found[k]) for k, name in enumerate(sources)}


def _num_objects(gt: dict) -> int:
    return sum(1 for a in gt["annotations"] if not a.get("iscrowd", 0))


def mrn_sample_jsons(pcfg, teacher_jsons: Sequence[str], gt_json: str, out_dir: str) -> dict:
    """MaskRefineNet training / validation sample jsons of the ``mrn_data`` stage (module docstring).

    Returns:
        ``{"outputs": {"mrn_train", "mrn_val" (when not empty), "synthetic_<k>"}, "metrics": {"samples": {...},
        "teacher_found": {checkpoint: n}, "full_objects": n, "synthetic_samples": n, "mrn_skipped": reason or
        None}}``.
    """
    gt = load_json(gt_json)
    n_full = _num_objects(gt)
    min_samples, mode = int(pcfg.MRN.MIN_SAMPLES), pcfg.MRN.FEW_SAMPLES
    split = dict(val_fraction=pcfg.MRN.VAL_FRACTION, seed=1)
    out = make_mrn_sample_jsons(list(teacher_jsons), gt_json, **split)
    names = [os.path.splitext(os.path.basename(p))[0] for p in teacher_jsons]
    samples = out["train"]["annotations"] + out["val"]["annotations"]
    found = teacher_found(samples, names)
    have = out["train"]["info"]["num_samples"]
    outputs, skipped, synthetic = {}, None, 0
    if have < min_samples and mode == "synthetic" and n_full:
        copies = math.ceil((min_samples - have) / n_full)
        image_root = (load_json(teacher_jsons[0]).get("info") or {}).get("image_root") if teacher_jsons else None
        image_root = image_root or pcfg.DATA.CUSTOM.IMAGE_ROOT or None
        for k in range(copies):
            outputs[f"synthetic_{k}"] = write_json_atomic(
                make_corrupted_pseudo_json(gt, seed=k, image_root=image_root, source=gt_json),
                os.path.join(out_dir, f"synthetic_{k}.json"))
        extra = list(outputs.values())
        out = make_mrn_sample_jsons(list(teacher_jsons) + extra, gt_json, image_root=image_root, **split)
        total = out["train"]["info"]["num_samples"] + out["val"]["info"]["num_samples"]
        synthetic = total - len(samples)
        logger.warning(f"MaskRefineNet: only {have} training samples from the teacher (< MRN.MIN_SAMPLES "
                       f"{min_samples}): {synthetic} synthetic ones added, the {n_full} full masks corrupted by "
                       f"erosion / dilation / shift ({copies} copies, MRN.FEW_SAMPLES synthetic)")
    elif have < min_samples:
        skipped = (f"only {have} training samples from the teacher (< MRN.MIN_SAMPLES {min_samples}) and "
                   + ("MRN.FEW_SAMPLES skip" if n_full else "no full mask to make synthetic ones from"))
    if skipped is None and not out["train"]["images"]:
        skipped = "no training sample"
    for split_name, data in out.items():
        if data["images"] and not (skipped and split_name == "train"):
            outputs[f"mrn_{split_name}"] = write_json_atomic(data, os.path.join(out_dir, f"mrn_{split_name}.json"))
    if skipped:
        logger.warning(f"MaskRefineNet skipped: {skipped}; the adaptive pseudo-labels go on unrefined")
    info = out["train"]["info"]
    metrics = {"samples": {"pairing": info["pairing"], "train": info["num_samples"],
                           "val": out["val"]["info"]["num_samples"], "mean_coarse_iou_train": info["mean_coarse_iou"]},
               "teacher_found": found, "full_objects": n_full, "teacher_samples": have,
               "synthetic_samples": synthetic, "mrn_skipped": skipped}
    return {"outputs": outputs, "metrics": metrics}


def skip_mrn(reason: str) -> dict:
    """The ``mrn`` stage without training samples: nothing trained (one log line)."""
    logger.warning(f"[mrn] skipped: {reason}")
    return {"outputs": {}, "metrics": {"skipped": reason}}


def unrefined(pseudo_json: str, output: str, reason: str) -> dict:
    """``pseudo_adaptive_mrn`` after a skipped ``mrn``: ``pseudo_json`` copied to ``output`` unrefined, with
    ``info["mrn_skipped"]`` = ``reason``."""
    data = load_json(pseudo_json)
    data["info"] = dict(data.get("info") or {}, mrn_skipped=reason)
    write_json_atomic(data, output)
    logger.warning(f"[pseudo_adaptive_mrn] MaskRefineNet skipped ({reason}): {len(data['annotations'])} adaptive "
                   f"pseudo-labels kept unrefined -> {output}")
    return {"outputs": {"pseudo_labels": output}, "metrics": {"refine": {"skipped": reason}}}


def _metrics(records: Mapping[str, dict], stage: str) -> dict:
    return (records.get(stage) or {}).get("metrics") or {}


def _test_ap(pcfg, records: Mapping[str, dict], stage: str):
    """segm AP of a trained stage on DATASETS.TEST (None: not evaluated)."""
    metrics = _metrics(records, stage)
    segm = (metrics.get(pcfg.DATASETS.TEST) or metrics).get("segm") if pcfg.DATASETS.TEST else None
    return None if segm is None else (segm.get("AP") or 0.0)


def click_round_line(pcfg, records: Mapping[str, dict]) -> str:
    """results.md: what the click round (PSEUDO.CLICK_ROUND) trained on and its AP beside the first teacher's
    ("" when it did not run)."""
    rec = records.get("teacher_clicks")
    if not rec:
        return ""
    ap, first = _test_ap(pcfg, records, "teacher_clicks"), _test_ap(pcfg, records, "teacher")
    kept = (_metrics(records, "pseudo_round1").get("export") or {}).get("adaptive") or {}
    return (f"- Click round (PSEUDO.CLICK_ROUND): a second teacher, {rec.get('max_iter', '?')} iterations on the full "
            f"masks + the first teacher's pseudo-labels that hold their click ({int(kept.get('num_annotations', 0))} "
            "exported; train.json in teacher_clicks/), made the adaptive pseudo-labels"
            + (f"; segm AP {ap:.1f} (first teacher {first:.1f})" if ap is not None and first is not None else "")
            + ".")


def few_label_summary(pcfg, records: Mapping[str, dict]) -> List[str]:
    """What a run lacked and what more labelling would likely help, one line each (empty when nothing was
    missing). Reads the stage markers: the scale choice (data), ``mrn_data``, ``mrn``, ``pseudo_adaptive``,
    ``labels`` and the teacher's evaluation. DATA.KIND custom only (the other kinds' labels are not the
    user's to add to)."""
    lines, advice = [], []
    if pcfg.DATA.KIND != "custom":
        return lines
    data = _metrics(records, "data")
    n_full = ((data.get("full") or {}).get("instances"))
    teacher_choice = ((data.get("scale_choice") or {}).get("nodes") or {}).get("TEACHER") or {}
    if n_full is not None and n_full < MIN_INSTANCES:
        ci = teacher_choice.get("size_interval") or []
        spread = (f"95% interval of the median size {ci[0]:.1f}-{ci[1]:.1f} px" if len(ci) == 2 else
                  "spread unknown")
        lines.append(f"only {n_full} fully-labelled object{'s' if n_full != 1 else ''} (< {MIN_INSTANCES}): the "
                     f"input scale rests on {'them' if n_full != 1 else 'it'} ({spread})")
        advice.append(f"at least {MIN_INSTANCES - n_full} more full objects for a steadier input scale")
    mrn_data = _metrics(records, "mrn_data")
    found = mrn_data.get("teacher_found") or {}
    if found and mrn_data.get("full_objects"):
        last, n = list(found.items())[-1], mrn_data["full_objects"]
        if last[1] < WEAK_SHARE * n:
            lines.append(f"the teacher found {last[1]} of its {n} training objects (IoU >= {FOUND_IOU:g}, checkpoint "
                         f"{last[0]}): label more full objects")
            advice.append("more full objects (the teacher learns from them alone)")
    export = (_metrics(records, "pseudo_adaptive").get("export") or {}).get("adaptive") or {}
    labels = _metrics(records, "labels")
    clicks = labels.get("num_clicks", export.get("num_points"))
    got = labels.get("num_pseudo_labels", export.get("num_annotations"))
    if clicks and got is not None and got < WEAK_SHARE * clicks:
        lines.append(f"{int(got)} of {int(clicks)} clicks got a pseudo-mask" + (
            "; the others are flagged fallback disks in labels.json (the student trains without them)"
            if labels else ""))
    holding = labels.get("num_pseudo_holding_click")
    if got and holding is not None and holding < WEAK_SHARE * got:
        lines.append(f"only {holding} of the {int(got)} pseudo-masks hold their own click (a label-free sign of "
                     "masks off target): label more full objects")
        advice.append("more full objects (the teacher learns from them alone)")
    if mrn_data.get("synthetic_samples"):
        lines.append(f"MaskRefineNet: {mrn_data.get('teacher_samples', 0)} training samples from the teacher (< "
                     f"MRN.MIN_SAMPLES {pcfg.MRN.MIN_SAMPLES}), {mrn_data['synthetic_samples']} synthetic ones "
                     "from the full masks added")
    skipped = _metrics(records, "mrn").get("skipped")
    if skipped:
        lines.append(f"MaskRefineNet skipped: {skipped}; adaptive + MRN = the adaptive pseudo-labels unrefined")
    if records.get("teacher") is not None and _test_ap(pcfg, records, "teacher") == 0:
        lines.append("the teacher predicted nothing right on the evaluation set (segm AP 0 or none)")
    if advice and lines:
        lines.append("likely to help most: " + "; ".join(dict.fromkeys(advice)))
    return lines
