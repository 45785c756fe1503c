"""Files of a review: review.json, review.md, the efficiency plot, overlays of the top-ranked images and
``labels_review.json`` (the labels with each click's ``wssis_flags`` / ``wssis_risk`` and the orphans as
their own annotations flagged ``"wssis_flag": "orphan"``, for the review exports)."""
import glob
import logging
import os
from typing import Mapping, Optional

from ..data.json_io import write_json_atomic
from ..utils.part_files import atomic_output
from ..utils.visualize import render_records
from .risk import FLAGS

__all__ = ["ORPHAN_FLAG", "REVIEW_JSON", "REVIEW_MD", "reviewed_labels", "review_document", "review_markdown",
           "plot_efficiency",
           "draw_top_images", "write_review"]

logger = logging.getLogger(__name__)

ORPHAN_FLAG = "orphan"
REVIEW_JSON, REVIEW_MD, LABELS_REVIEW = "review.json", "review.md", "labels_review.json"


def reviewed_labels(labels: Mapping, review: Mapping, orphan_weight: float) -> dict:
    """``labels`` with ``wssis_flags`` (list) and ``wssis_risk`` on each reviewed click annotation and one
    annotation per orphan (``"wssis_flag": "orphan"``, ``wssis_flags`` ["orphan"], ``wssis_risk`` =
    ``orphan_weight`` x score, no ``point_ann_id``)."""
    by_click = {c["point_ann_id"]: c for c in review["clicks"]}
    anns = []
    for a in labels["annotations"]:
        c = by_click.get(a.get("point_ann_id"))
        anns.append(dict(a, wssis_flags=c["flags"], wssis_risk=c["risk"]) if c is not None else dict(a))
    next_id = max([a.get("id", 0) for a in anns], default=0) + 1
    for img in review["images"]:
        for o in img["orphans"]:
            anns.append({"id": next_id, "image_id": img["image_id"], "category_id": o["category_id"], "iscrowd": 0,
                         "segmentation": o["segmentation"], "bbox": o["bbox"],
                         "area": o["area"],
                         "score": o["score"], "wssis_flag": ORPHAN_FLAG, "wssis_flags": [ORPHAN_FLAG],
                         "wssis_risk": round(orphan_weight * o["score"], 4)})
            next_id += 1
    info = dict(labels.get("info") or {}, review="wssis_flags / wssis_risk per click; orphans flagged "
                                                 f"\"{ORPHAN_FLAG}\" (likely missed clicks)")
    return dict(labels, info=info, annotations=anns)


def review_document(review: Mapping, info: Mapping, settings: Mapping, measured: Mapping) -> dict:
    """review.json: {"info", "settings", "summary" (counts of clicks, images, flagged clicks, orphans, clicks
    per flag), "measured" (``measure.score_review``), "images", "clicks"} from ``review.review_dataset``'s
    output."""
    clicks = review["clicks"]
    summary = {"num_clicks": len(clicks), "num_images": len(review["images"]),
               "num_flagged": sum(bool(c["flags"]) for c in clicks),
               "num_orphans": sum(len(i["orphans"]) for i in review["images"]),
               "flag_counts": {f: sum(f in c["flags"] for c in clicks) for f in FLAGS}}
    return {"info": dict(info), "settings": dict(settings), "summary": summary, "measured": dict(measured),
            "images": review["images"], "clicks": clicks}


def _pct(v, digits=1):
    return "-" if v is None else f"{100 * v:.{digits}f}%"


def review_markdown(review: Mapping, top: int = 20) -> str:
    """review.md: summary, measured quality (when scored), the images to review first."""
    s = review["summary"]
    lines = ["# Review of the pseudo-masks", "",
             f"{s['num_clicks']} clicks on {s['num_images']} images: {s['num_flagged']} flagged, "
             f"{s['num_orphans']} orphans (confident click-free detections without a click: likely missed "
             "clicks). Risk in [0, 1], higher = more likely wrong; review the images in rank order.", "",
             "| flag | clicks |", "|---|---|"]
    lines += [f"| {f} | {s['flag_counts'][f]} |" for f in FLAGS]
    m = review.get("measured") or {}
    if "efficiency" in m:
        e = m["efficiency"]
        lines += ["", f"## Measured against the true masks (bad: IoU < {m['bad_iou']:g})", "",
                  f"Base rate: {e['num_bad']} of {e['num_clicks']} masks are bad ({_pct(e['base_rate'])}).", "",
                  "| reviewed (top by risk) | share of the bad masks found | random order |", "|---|---|---|"]
        lines += [f"| {k} | {_pct(v)} | {k} |" for k, v in e["found"].items()]
        lines += ["", "| flag | flagged | precision | recall |", "|---|---|---|---|"]
        lines += [f"| {f} | {q['flagged']} | {_pct(q['precision'])} | {_pct(q['recall'])} |"
                  for f, q in m["flags"].items()]
    if "missed_clicks" in m:
        o = m["missed_clicks"]
        lines += ["", f"## Missed clicks: {_pct(o['share'], 0)} of the clicks removed (seed {o['seed']})", "",
                  f"{o['recovered']} of {o['removed']} removed clicks come back as orphans (recall "
                  f"{_pct(o['recall'])}); {o['real']} of {o['orphans']} orphans are removed objects (precision "
                  f"{_pct(o['precision'])})."]
    lines += ["", f"## Review first (top {min(top, len(review['images']))} images)", "",
              "| rank | image | risk | clicks | confident detections | flagged | orphans |",
              "|---|---|---|---|---|---|---|"]
    for img in review["images"][:top]:
        lines.append(f"| {img['rank']} | {img['file_name']} | {img['risk']:.2f} | {img['num_clicks']} | "
                     f"{'-' if img['num_detections'] is None else img['num_detections']} | {img['num_flagged']} | "
                     f"{len(img['orphans'])} |")
    return "\n".join(lines) + "\n"


def plot_efficiency(efficiency: Mapping, path: str) -> str:
    """Review-efficiency curve: share of bad masks found vs share of clicks reviewed, risk order and random."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [p / 100 for p in range(101)]
    fig, ax = plt.subplots(figsize=(4.2, 3.6), dpi=120)
    ax.plot(xs, efficiency["curve"], label="by risk")
    ax.plot(xs, xs, "--", color="grey", label="random order")
    ax.axvline(0.2, color="lightgrey", lw=0.8)
    ax.set_xlabel("share of clicks reviewed")
    ax.set_ylabel("share of bad masks found")
    ax.set_title(f"{efficiency['num_bad']} bad of {efficiency['num_clicks']} masks", fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_output(path, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)
    return path


def draw_top_images(review: Mapping, labels: Mapping, image_root: str, output_dir: str, num: int) -> list:
    """Overlays of the ``num`` top-ranked images: each click's mask labelled with its class, risk and flags,
    each orphan as "orphan <class> <score>" (``utils.visualize``)."""
    if num <= 0:
        return []
    names = {c["id"]: c.get("name", str(c["id"])) for c in labels.get("categories") or []}
    images = {img["id"]: img for img in labels["images"]}
    by_click = {c["point_ann_id"]: c for c in review["clicks"]}
    anns_of = {}
    for a in labels["annotations"]:
        c = by_click.get(a.get("point_ann_id"))
        if c is not None:
            label = f"{names.get(a['category_id'], a['category_id'])} r{c['risk']:.2f} {' '.join(c['flags'])}"
            anns_of.setdefault(a["image_id"], []).append(
                {"category_id": label.strip(), "segmentation": a.get("segmentation"), "point": a.get("point")})
    records = []
    for img in review["images"][:num]:
        anns = anns_of.get(img["image_id"], []) + [
            {"category_id": f"orphan {names.get(o['category_id'], o['category_id'])} {o['score']:.2f}",
             "segmentation": o["segmentation"]} for o in img["orphans"]]
        meta = images[img["image_id"]]
        stem = os.path.splitext(os.path.basename(meta["file_name"]))[0]
        records.append({"file_name": os.path.join(image_root or "", meta["file_name"]), "image_id": img["image_id"],
                        "height": meta["height"], "width": meta["width"], "annotations": anns,
                        "overlay_name": f"rank{img['rank']:03d}_{stem}"})
    return render_records(records, str, output_dir, max_images=num, skip_bad_images=True)


def write_review(review: dict, labels: Mapping, output_dir: str, *, image_root: Optional[str] = None,
                 overlays: int = 8, orphan_weight: float = 0.5) -> dict:
    """Write review.json, review.md, efficiency.png (when measured), labels_review.json and ``overlays``
    overlays into ``output_dir``; returns {key: path}."""
    os.makedirs(output_dir, exist_ok=True)
    out = {"review": write_json_atomic(review, os.path.join(output_dir, REVIEW_JSON))}
    md = os.path.join(output_dir, REVIEW_MD)
    with atomic_output(md) as f:
        f.write(review_markdown(review))
    out["review_md"] = md
    eff = (review.get("measured") or {}).get("efficiency")
    if eff and eff["num_bad"]:
        out["efficiency_plot"] = plot_efficiency(eff, os.path.join(output_dir, "efficiency.png"))
    path = os.path.join(output_dir, LABELS_REVIEW)
    write_json_atomic(reviewed_labels(labels, review, orphan_weight), path)
    out["labels_review"] = path
    overlay_dir = os.path.join(output_dir, "overlays")
    stale = glob.glob(os.path.join(overlay_dir, "rank*.png"))
    for path in stale:  # an earlier review's ranking
        os.remove(path)
    if stale:
        logger.info(f"{len(stale)} overlays of an earlier review removed from {overlay_dir}")
    drawn = draw_top_images(review, labels, image_root, overlay_dir, overlays)
    if drawn:
        out["overlays"] = os.path.dirname(drawn[0])
    logger.info(f"Review written to {output_dir}: {', '.join(os.path.basename(p) for p in out.values())}")
    return out
