"""Flags and risk of a click's mask from its review signals (pure functions).

Each flag has a *strength* s in [0, 1] with the flag raised when s >= 0.5 (the flag's threshold maps to
0.5; a binary flag is 0 or 1):

=================  ==========================================================================================
``fallback``       the click has no mask (labels.json's disk around the click)
``outside``        the mask does not contain its click
``overlap``        intersection / the smaller mask with another click's mask: s = 0.5 x overlap / OVERLAP
``two_clicks``     the mask contains another click (one mask over two objects, or one object clicked twice)
``area``           |log area - class mean| / class std of the full labels: s = 0.5 x z / AREA_Z
``low_score``      teacher score (class x maskness): s = 1 - score / (2 LOW_SCORE)
``mrn_disagree``   1 - IoU(teacher mask, MaskRefineNet mask): s = 0.5 x (1 - IoU) / (1 - MRN_IOU)
``image_border``   mask pixels on the image border / sqrt(area): s = 0.5 x cut / BORDER_CUT
``tile_border``    the same on the inner edges of the tile the click was decoded in
``plain_disagree`` 1 - IoU(mask, the best click-free detection holding the click): s = 0.5 x (1 - IoU) / (1 - PLAIN_IOU)
``no_detection``   no detection of the click-free pass (from PASS_SCORE) holds the click
=================  ==========================================================================================

Risk (higher = more likely wrong): a logistic model of the strengths, ``risk = sigmoid(b + sum_f w_f s_f)``,
with ``b`` = ``REVIEW.BIAS`` and ``w_f`` = ``REVIEW.WEIGHTS``, fitted (``measure.fit_weights``: L2-regularised
logistic regression, "is the mask bad") on the shapes demo's clicked images, the validation data of this
choice (docs/RESULTS.md "Review"); every scored run reports the weights fitted on itself
(review.json ``measured.suggested_weights``) for data of another kind. A fallback (no mask) has a weight
that makes its risk ~1: it is always reviewed first. An image's risk is the largest of its clicks' risks
and its orphans' ``ORPHAN_WEIGHT x score``.
"""
import dataclasses
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

__all__ = ["FLAGS", "DEFAULT_WEIGHTS", "DEFAULT_BIAS", "ReviewSettings", "flag_strengths", "click_risk", "flag_names",
           "image_risk"]

FLAGS = ("fallback", "outside", "overlap", "two_clicks", "area", "low_score", "mrn_disagree", "image_border",
         "tile_border", "plain_disagree", "no_detection")
# Logistic weights per flag, in FLAGS order, and the bias: fitted on the shapes demo (docs/RESULTS.md "Review");
# fallback is fixed at 20 (risk ~1); tile_border (no tiles in the demo: not measurable there) is set by hand to
# two_clicks' weight.
DEFAULT_WEIGHTS = (20.0, 1.6, 1.34, 1.78, 0.85, 1.72, 5.52, -0.25, 1.78, 1.73, 1.75)
DEFAULT_BIAS = -5.92


@dataclasses.dataclass(frozen=True)
class ReviewSettings:
    """Thresholds and weights of the review (the pipeline's ``REVIEW`` node, one-line comments there)."""

    overlap: float = 0.5
    area_z: float = 2.0
    low_score: float = 0.3
    mrn_iou: float = 0.5
    plain_iou: float = 0.5
    border_cut: float = 0.25
    weights: Tuple[float, ...] = DEFAULT_WEIGHTS
    bias: float = DEFAULT_BIAS
    orphan_score: float = 0.2
    orphan_iou: float = 0.5
    click_iou: float = 0.2
    orphan_weight: float = 0.5
    bad_iou: float = 0.5

    def __post_init__(self):
        if len(self.weights) != len(FLAGS):
            raise ValueError(f"REVIEW.WEIGHTS needs {len(FLAGS)} weights, one per flag {list(FLAGS)}, got "
                             f"{list(self.weights)}")

    @classmethod
    def from_node(cls, node) -> "ReviewSettings":
        """From a ``REVIEW`` config node (pipeline config)."""
        return cls(overlap=node.OVERLAP, area_z=node.AREA_Z, low_score=node.LOW_SCORE, mrn_iou=node.MRN_IOU,
                   plain_iou=node.PLAIN_IOU, border_cut=node.BORDER_CUT, weights=tuple(float(w) for w in node.WEIGHTS),
                   bias=float(node.BIAS), orphan_score=node.ORPHAN_SCORE, orphan_iou=node.ORPHAN_IOU,
                   click_iou=node.CLICK_IOU, orphan_weight=node.ORPHAN_WEIGHT, bad_iou=node.BAD_IOU)


def flag_strengths(signals: Mapping[str, np.ndarray], *, fallback: np.ndarray, area_z: np.ndarray,
                   scores: np.ndarray, settings: ReviewSettings, plain: Optional[Tuple[np.ndarray, np.ndarray]] = None
                   ) -> np.ndarray:
    """(N, F) strengths in [0, 1] of ``FLAGS`` (module docstring) from ``signals.click_signals`` output.

    Args:
        fallback: (N,) bool, the click has no mask.
        area_z: (N,) ``signals.area_zscores``.
        scores: (N,) teacher scores (0 for a fallback).
        plain: ``signals.plain_signals`` (has, iou), or None without a click-free pass (both flags 0).
    """
    fallback = np.asarray(fallback, dtype=bool)
    n = len(fallback)
    s = settings
    mrn = np.nan_to_num(1.0 - signals["mrn_iou"], nan=0.0)
    has, plain_iou = plain if plain is not None else (np.ones(n, dtype=bool), np.full(n, np.nan))
    disagree = np.nan_to_num(1.0 - plain_iou, nan=0.0)
    cols = [
        fallback.astype(np.float64),
        (~signals["contains"]).astype(np.float64),
        0.5 * signals["overlap"] / s.overlap,
        (signals["other_clicks"] > 0).astype(np.float64),
        0.5 * np.asarray(area_z, dtype=np.float64) / s.area_z,
        1.0 - np.asarray(scores, dtype=np.float64) / (2 * s.low_score),
        0.5 * mrn / max(1.0 - s.mrn_iou, 1e-6),
        0.5 * signals["image_cut"] / s.border_cut,
        0.5 * signals["tile_cut"] / s.border_cut,
        0.5 * disagree / max(1.0 - s.plain_iou, 1e-6),
        (~np.asarray(has, dtype=bool)).astype(np.float64),
    ]
    out = np.clip(np.stack(cols, axis=1).reshape(n, len(FLAGS)), 0.0, 1.0)
    out[fallback, 1:] = 0.0  # a fallback is only a fallback: its disk says nothing more
    return out


def click_risk(strengths: np.ndarray, weights: Sequence[float], bias: float) -> np.ndarray:
    """(N,) risk ``sigmoid(bias + strengths @ weights)`` of (N, F) strengths."""
    z = bias + np.asarray(strengths, dtype=np.float64) @ np.asarray(weights, dtype=np.float64)
    return 1.0 / (1.0 + np.exp(-z))


def flag_names(strengths: np.ndarray) -> list:
    """Per click, the names of its raised flags (strength >= 0.5), in ``FLAGS`` order."""
    return [[f for f, on in zip(FLAGS, row) if on] for row in (np.asarray(strengths) >= 0.5)]


def image_risk(click_risks: np.ndarray, orphan_scores: np.ndarray, orphan_weight: float) -> float:
    """An image's risk: the largest click risk and ``orphan_weight`` x orphan score (0 for nothing)."""
    values = np.concatenate([np.asarray(click_risks, dtype=np.float64).reshape(-1),
                             orphan_weight * np.asarray(orphan_scores, dtype=np.float64).reshape(-1), [0.0]])
    return float(values.max())


def weights_dict(weights: Sequence[float]) -> Dict[str, float]:
    """{flag: weight}."""
    return dict(zip(FLAGS, (float(w) for w in weights)))


def settings_dict(settings: ReviewSettings, extra: Optional[dict] = None) -> dict:
    """The settings as a json-able dict (review.json "settings")."""
    d = dataclasses.asdict(settings)
    d["weights"] = weights_dict(settings.weights)
    return dict(d, **(extra or {}))
