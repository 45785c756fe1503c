"""The pipeline's ``review`` stage (after ``labels``), and the same on an existing run's folder.

The stage exports a click-free pass of the teacher over the clicked images (``MODEL.WSSIS.PSEUDO_LABEL_MODE
threshold`` from ``REVIEW.PASS_SCORE``: ``<OUTPUT_DIR>/review/plain_<score>.json``; the pipeline's export machinery,
in ``--num-gpus`` processes), then, here, :func:`run_review`: the clicks and their masks (labels.json, or
labels built in memory from the clicks and the final pseudo-labels when the run has no labels stage), the
teacher's masks before MaskRefineNet, the full labels' sizes, the teacher's tiles (``INPUT.TILE`` of its
export config), and the true masks of the clicked images when the run has them (the stage then scores
itself). Outputs in ``<OUTPUT_DIR>/review/`` (``report.write_review``).

On a finished run: ``python -m wssis_d2.review --pipeline-dir output/X`` (the stage and its marker, as the
pipeline would run it; ``REVIEW.*`` overrides after the folder).
"""
import logging
import os
from typing import Mapping, Sequence

import yaml

from detectron2.data import MetadataCatalog

from ..data.json_io import load_json
from ..pseudo.labels import build_labels
from ..pipeline.data import dataset_json
from .measure import score_review
from .report import review_document, write_review
from .review import review_dataset
from .risk import ReviewSettings, settings_dict
from .signals import area_stats, tile_grid

__all__ = ["PLAIN_JSON", "run_review", "tiles_of_config"]

logger = logging.getLogger(__name__)

PLAIN_JSON = "plain_{score:g}.json"  # the click-free pass from this score on (another score: another pass)


def tiles_of_config(config_yaml: str):
    """``tiles(h, w) -> (T, 4)`` of a saved detectron2 config's ``INPUT.TILE`` (None when tiles are off or the
    file is missing)."""
    if not os.path.isfile(config_yaml):
        return None
    with open(config_yaml) as f:
        tile = ((yaml.safe_load(f) or {}).get("INPUT") or {}).get("TILE") or {}
    return tile_grid(int(tile.get("SIZE", 0) or 0), float(tile.get("OVERLAP", 0.25)))


def _labels(pcfg, records: Mapping) -> dict:
    """labels.json of the run, or the same built from the clicks and the final pseudo-labels."""
    if "labels" in records:
        return load_json(records["labels"]["outputs"]["labels"])
    source = "pseudo_adaptive_mrn" if "pseudo_adaptive_mrn" in records else "pseudo_adaptive"
    pseudo_json = records[source]["outputs"][source[len("pseudo_"):]]
    full_json, points_json = dataset_json(pcfg.DATASETS.FULL), dataset_json(pcfg.DATASETS.POINTS)
    # Only the clicked images are reviewed: the full ones' true masks are not needed here.
    full = {"images": [], "annotations": [], "categories": load_json(full_json).get("categories")}
    labels = build_labels(full, load_json(points_json), load_json(pseudo_json),
                          fallback_radius=pcfg.LABELS.FALLBACK_RADIUS, names=(full_json, points_json, pseudo_json),
                          image_root=MetadataCatalog.get(pcfg.DATASETS.POINTS).get("image_root", None))
    labels["info"]["pseudo_stage"] = source
    return labels


def run_review(pcfg, records: Mapping, stage_dir: str, plain_json: str) -> dict:
    """The review of a pipeline run (module docstring); returns the stage result {"outputs", "metrics"}.

    Args:
        records: markers of the finished stages (``pseudo_adaptive`` at least; ``pseudo_adaptive_mrn``,
            ``labels`` when the run has them).
        plain_json: the click-free pass's pseudo-label json (threshold mode).
    """
    r = pcfg.REVIEW
    settings = ReviewSettings.from_node(r)
    labels = _labels(pcfg, records)
    coarse = None
    if "pseudo_adaptive_mrn" in records:
        teacher = load_json(records["pseudo_adaptive"]["outputs"]["adaptive"])
        coarse = {a["point_ann_id"]: a["segmentation"] for a in teacher["annotations"]}
    full = load_json(dataset_json(pcfg.DATASETS.FULL))
    stats = area_stats(full["annotations"])
    tiles = tiles_of_config(os.path.join(stage_dir, "config.yaml"))
    plain = load_json(plain_json)
    review = review_dataset(labels, coarse=coarse, plain=plain, stats=stats, tiles=tiles, settings=settings)
    gt = dataset_json(pcfg.DATASETS.POINTS_GT) if pcfg.DATASETS.POINTS_GT else None
    measured = score_review(labels, review["clicks"], gt=gt, plain=plain, settings=settings,
                            drop_share=r.DROP_CLICKS, drop_seed=r.DROP_SEED)
    info = {"labels": records["labels"]["outputs"]["labels"] if "labels" in records else labels["info"].get("pseudo"),
            "plain_pass": plain_json, "true_masks": gt, "tiles": tiles is not None, "mrn": coarse is not None}
    review = review_document(review, info, settings_dict(settings, {"drop_clicks": r.DROP_CLICKS,
                                                                     "drop_seed": r.DROP_SEED}), measured)
    image_root = (labels.get("info") or {}).get("image_root") or ""
    outputs = write_review(review, labels, stage_dir, image_root=image_root, overlays=r.OVERLAYS,
                           orphan_weight=settings.orphan_weight)
    metrics = dict(review["summary"])
    eff = measured.get("efficiency")
    if eff:
        metrics.update(base_rate=eff["base_rate"], found=eff["found"], lift=eff["lift"])
    if "missed_clicks" in measured:
        metrics["missed_clicks"] = measured["missed_clicks"]
    _log(metrics)
    return {"outputs": outputs, "metrics": metrics}


def _log(m: Mapping) -> None:
    text = f"Review: {m['num_flagged']} of {m['num_clicks']} clicks flagged, {m['num_orphans']} orphans"
    if m.get("found"):
        text += (f"; bad masks (IoU < 0.5): base rate {m['base_rate']:.3f}, found in the top 10/20/50%: "
                 + " / ".join("-" if v is None else f"{v:.2f}" for v in m["found"].values()))
    if m.get("missed_clicks"):
        o = m["missed_clicks"]
        text += (f"; {o['share']:.0%} clicks removed: {o['recovered']} of {o['removed']} come back as orphans, "
                 f"{o['real']} of {o['orphans']} orphans are removed objects")
    logger.info(text)


def needed_stages(planned: Sequence[str]) -> list:
    """The stages the review reads when they are planned (for the stand-alone run's checks)."""
    return [s for s in ("teacher", "pseudo_adaptive", "pseudo_adaptive_mrn", "labels") if s in planned]
