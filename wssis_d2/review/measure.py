"""The review scored against the truth (with the true masks of the clicked images) and the missed-click test.

* A click's mask is **bad** when its IoU with the click's true mask (``quality.point_ious``: matched by
  ``point_ann_id`` == true annotation id) is below ``bad_iou`` (0.5).
* **Review efficiency** (``efficiency``): reviewing the clicks in risk order, the share of the bad masks
  found in the top 10 / 20 / 50 % (and a curve at every percent), against the base rate (the share of bad
  masks; a random order finds f of them in the top f). Tied risks share the slots evenly (the expected
  count of a random order among the tied).
* **Flags** (``flag_quality``): per flag, how many clicks it raises, its precision (bad among them) and
  recall (share of the bad ones it raises).
* **Missed clicks** (``orphan_recovery``): ``drop_clicks`` removes a seeded share of the clicks from a copy;
  the orphans are searched again with the remaining clicks; a removed click is *recovered* when an orphan
  contains it, and an orphan is *real* when it contains a removed click (on data where every object is
  clicked, any other orphan is a false alarm).
"""
from typing import Dict, Iterable, Mapping, Optional, Sequence

import numpy as np

from ..evaluation.quality import clicked_gt, point_ious
from .review import clicks_by_image, detections_by_image, is_click, orphans_of_image
from .risk import DEFAULT_WEIGHTS, FLAGS, ReviewSettings
from .signals import in_masks

__all__ = ["FRACTIONS", "true_ious", "efficiency", "flag_quality", "fit_weights", "drop_clicks", "orphan_recovery",
           "score_review"]

FRACTIONS = (0.1, 0.2, 0.5)


def true_ious(labels: Mapping, gt) -> Dict[int, float]:
    """{point_ann_id: IoU of its mask with its true mask} for the clicks that have a true mask in ``gt``
    (points_gt json or its path, ids aligned to the clicks); a fallback disk is scored like any mask."""
    coco_gt, points = clicked_gt(gt)
    anns = [a for a in labels["annotations"] if is_click(a)]
    ious, _ = point_ious(anns, points, coco_gt)
    clicked = {a["point_ann_id"] for a in anns}
    return {int(g["id"]): float(v) for g, v in zip(points, ious) if g["id"] in clicked}


def _found(risks: np.ndarray, bad: np.ndarray, k: int) -> float:
    """Expected number of bad clicks among the ``k`` highest risks, ties sharing the remaining slots."""
    if k <= 0:
        return 0.0
    order = np.sort(risks)[::-1]
    cut = order[min(k, len(order)) - 1]
    above = risks > cut
    tied = risks == cut
    slots = k - above.sum()
    return float(bad[above].sum() + bad[tied].sum() * slots / max(tied.sum(), 1))


def efficiency(risks: Sequence[float], bad: Sequence[bool], fractions: Iterable[float] = FRACTIONS) -> dict:
    """Review efficiency (module docstring).

    Returns:
        {"num_clicks", "num_bad", "base_rate", "found": {"10%": share of the bad masks in the top 10 %, ...},
         "lift": {"10%": found / fraction, ...}, "curve": [share found in the top 0, 1, ..., 100 %]}.
    """
    risks, bad = np.asarray(risks, dtype=np.float64), np.asarray(bad, dtype=bool)
    n, nb = len(risks), int(bad.sum())

    def share(f):
        return _found(risks, bad, int(round(f * n))) / nb if nb else None
    found = {f"{round(100 * f)}%": share(f) for f in fractions}
    return {"num_clicks": n, "num_bad": nb, "base_rate": nb / n if n else None, "found": found,
            "lift": {k: (v / (int(k[:-1]) / 100) if v is not None else None) for k, v in found.items()},
            "curve": [share(p / 100) for p in range(101)]}


def flag_quality(clicks: Sequence[Mapping], bad_by_id: Mapping[int, bool]) -> Dict[str, dict]:
    """{flag: {"flagged", "bad_flagged", "precision", "recall"}} over the clicks in ``bad_by_id``."""
    rows = [c for c in clicks if c["point_ann_id"] in bad_by_id]
    bad = np.array([bad_by_id[c["point_ann_id"]] for c in rows], dtype=bool)
    out = {}
    for f in FLAGS:
        on = np.array([f in c["flags"] for c in rows], dtype=bool)
        hit = int((on & bad).sum())
        out[f] = {"flagged": int(on.sum()), "bad_flagged": hit, "precision": hit / on.sum() if on.any() else None,
                  "recall": hit / bad.sum() if bad.any() else None}
    return out


def fit_weights(strengths: np.ndarray, bad: np.ndarray, l2: float = 0.01, iterations: int = 50) -> tuple:
    """(bias, [weight per flag]) of an L2-regularised logistic regression of ``bad`` (N,) on the (N, F) flag
    strengths (Newton's method); a flag never raised (strength 0 throughout) gets weight 0, except fallback,
    which keeps the default (a click without a mask is always reviewed first)."""
    x = np.concatenate([np.ones((len(strengths), 1)), np.asarray(strengths, dtype=np.float64)], axis=1)
    y = np.asarray(bad, dtype=np.float64)
    b = np.zeros(x.shape[1])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-x @ b))
        hessian = x.T @ (x * (p * (1 - p))[:, None]) + l2 * np.eye(len(b))
        b += np.linalg.solve(hessian, x.T @ (y - p) - l2 * b)
    weights = [float(v) for v in b[1:]]
    if not (x[:, 1] > 0).any():
        weights[0] = DEFAULT_WEIGHTS[0]
    return float(b[0]), weights


def drop_clicks(ids: Sequence[int], share: float, seed: int) -> set:
    """A seeded ``share`` of the click ids (rounded, at least one when share > 0 and ids exist)."""
    ids = sorted(int(i) for i in ids)
    if share <= 0 or not ids:
        return set()
    k = max(1, int(round(share * len(ids))))
    return set(np.random.default_rng(seed).choice(ids, size=min(k, len(ids)), replace=False).tolist())


def orphan_recovery(labels: Mapping, plain: Mapping, removed: set, settings: ReviewSettings) -> dict:
    """Orphans with the ``removed`` clicks taken out (module docstring).

    Returns:
        {"removed", "recovered", "recall" (recovered / removed), "orphans", "real", "precision" (real / orphans)}.
    """
    images = {img["id"]: img for img in labels["images"]}
    dets = detections_by_image(plain)
    removed_n = recovered = num_orphans = real = 0
    for image_id, clicks in clicks_by_image(labels).items():
        gone = [c for c in clicks if c["point_ann_id"] in removed]
        kept = [c for c in clicks if c["point_ann_id"] not in removed]
        img = images[image_id]
        hw = (int(img["height"]), int(img["width"]))
        orphans = orphans_of_image(dets.get(image_id, []), kept, hw, settings)
        removed_n += len(gone)
        num_orphans += len(orphans)
        if not gone or not orphans:
            continue
        hit = in_masks(np.array([c["point"] for c in gone], dtype=np.float64), [o["segmentation"] for o in orphans],
                       *hw)  # (removed, orphans)
        recovered += int(hit.any(1).sum())
        real += int(hit.any(0).sum())
    return {"removed": removed_n, "recovered": recovered, "recall": recovered / removed_n if removed_n else None,
            "orphans": num_orphans, "real": real, "precision": real / num_orphans if num_orphans else None}


def score_review(labels: Mapping, clicks: Sequence[Mapping], gt=None, plain: Optional[Mapping] = None,
                 settings: ReviewSettings = ReviewSettings(), drop_share: float = 0.0, drop_seed: int = 0) -> dict:
    """review.json's "measured": efficiency and flags with ``gt``, orphan recovery with ``plain`` and
    ``drop_share`` > 0 (empty parts left out)."""
    out = {}
    if gt is not None:
        ious = true_ious(labels, gt)
        bad = {pid: iou < settings.bad_iou for pid, iou in ious.items()}
        rows = [c for c in clicks if c["point_ann_id"] in bad]
        out["bad_iou"] = settings.bad_iou
        out["efficiency"] = efficiency([c["risk"] for c in rows], [bad[c["point_ann_id"]] for c in rows])
        out["flags"] = flag_quality(rows, bad)
        strengths = np.array([[c["strengths"][f] for f in FLAGS] for c in rows]).reshape(len(rows), len(FLAGS))
        bias, weights = fit_weights(strengths, np.array([bad[c["point_ann_id"]] for c in rows]))
        out["suggested_weights"] = {"bias": round(bias, 2), "weights": [round(w, 2) for w in weights]}
        out["mean_true_iou"] = float(np.mean(list(ious.values()))) if ious else None
        out["true_iou"] = {str(pid): round(v, 4) for pid, v in ious.items()}  # per click (weights on other data)
    if plain is not None and drop_share > 0:
        removed = drop_clicks([c["point_ann_id"] for c in clicks], drop_share, drop_seed)
        out["missed_clicks"] = dict(orphan_recovery(labels, plain, removed, settings), share=drop_share,
                                    seed=drop_seed)
    return out
