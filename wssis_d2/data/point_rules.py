"""Point rules: one point per binary instance mask.

Coordinate convention (detectron2's continuous pixel coordinates): pixel (row i, column j) covers
[j, j + 1) x [i, i + 1), so its centre is (x, y) = (j + 0.5, i + 0.5); the image spans
[0, W] x [0, H]. Every rule returns the centre of one mask pixel, so ``mask[int(y), int(x)]`` is set.

Rules (``POINT_RULES``):
    centroid: the mask's centre of mass (as in the published PointWSSIS runs); when the pixel under it
        is not in the mask (non-convex shapes, e.g. a ring), the nearest mask pixel centre instead.
    random: a mask pixel drawn uniformly, from a generator seeded by (seed, annotation id) so that the
        result does not depend on processing order.
    interior: the mask pixel farthest from the mask boundary (L2 distance transform; the image border
        counts as boundary).
"""
import cv2
import numpy as np

__all__ = ["POINT_RULES", "centroid_point", "interior_point", "random_point", "sample_point"]


def _check_mask(mask):
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"Expected a binary mask of shape (H, W), got shape {mask.shape}")
    mask = mask.astype(bool, copy=False)
    if not mask.any():
        raise ValueError("Cannot place a point on an empty mask")
    return mask


def centroid_point(mask):
    """Centre of mass of ``mask`` (H, W), snapped to the nearest mask pixel centre when outside.

    Returns:
        (x, y) floats in continuous pixel coordinates. Ties in the snapping go to the first pixel in
        row-major order.
    """
    mask = _check_mask(mask)
    ys, xs = np.nonzero(mask)
    cx, cy = xs.mean() + 0.5, ys.mean() + 0.5
    i, j = min(int(cy), mask.shape[0] - 1), min(int(cx), mask.shape[1] - 1)
    if mask[i, j]:
        return float(cx), float(cy)
    k = int(np.argmin((xs + 0.5 - cx) ** 2 + (ys + 0.5 - cy) ** 2))
    return float(xs[k] + 0.5), float(ys[k] + 0.5)


def random_point(mask, rng):
    """Centre of a mask pixel drawn uniformly from ``mask`` (H, W) with ``rng`` (np.random.Generator).

    Returns:
        (x, y) floats in continuous pixel coordinates.
    """
    mask = _check_mask(mask)
    ys, xs = np.nonzero(mask)
    k = int(rng.integers(len(xs)))
    return float(xs[k] + 0.5), float(ys[k] + 0.5)


def interior_point(mask):
    """Centre of the pixel of ``mask`` (H, W) farthest from its boundary (cv2.distanceTransform, L2).

    Pixels outside the image count as background. Ties go to the first pixel in row-major order.

    Returns:
        (x, y) floats in continuous pixel coordinates.
    """
    mask = _check_mask(mask)
    padded = np.pad(mask.astype(np.uint8), 1)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    i, j = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return float(j + 0.5), float(i + 0.5)


POINT_RULES = ("centroid", "random", "interior")


def sample_point(mask, rule, seed=0, ann_id=0):
    """Apply point rule ``rule`` (one of ``POINT_RULES``) to ``mask`` (H, W).

    ``seed`` and ``ann_id`` (non-negative ints) seed the ``random`` rule as
    ``np.random.default_rng([seed, ann_id])``; the other rules are deterministic.

    Returns:
        (x, y) floats in continuous pixel coordinates (pixel centre = index + 0.5).
    """
    if rule == "centroid":
        return centroid_point(mask)
    if rule == "interior":
        return interior_point(mask)
    if rule == "random":
        return random_point(mask, np.random.default_rng([int(seed), int(ann_id)]))
    raise ValueError(f"Unknown point rule {rule!r}; choose one of {POINT_RULES}")
