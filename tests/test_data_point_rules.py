"""Point rules: every point is a mask pixel centre (x, y) = (j + 0.5, i + 0.5)."""
import cv2
import numpy as np
import pytest

from wssis_d2.data.point_rules import centroid_point, interior_point, random_point, sample_point


def ring(h=100, w=120, center=(60, 50), r_out=30, r_in=15):
    mask = np.zeros((h, w), np.uint8)
    cv2.circle(mask, center, r_out, 1, -1)
    cv2.circle(mask, center, r_in, 0, -1)
    return mask.astype(bool)


def rect(h=40, w=60, rows=(10, 20), cols=(20, 40)):
    mask = np.zeros((h, w), bool)
    mask[rows[0]:rows[1], cols[0]:cols[1]] = True
    return mask


def inside(mask, point):
    x, y = point
    return bool(mask[int(y), int(x)]) and (x % 1, y % 1) == (0.5, 0.5)


def test_centroid_convex_is_exact_center():
    # The rectangle covers [20, 40] x [10, 20] in continuous coordinates.
    assert centroid_point(rect()) == (30.0, 15.0)


def test_centroid_of_ring_snaps_to_nearest_mask_pixel():
    mask = ring()
    ys, xs = np.nonzero(mask)
    com = (xs.mean() + 0.5, ys.mean() + 0.5)
    assert not mask[int(com[1]), int(com[0])], "the ring's centre of mass is in its hole"
    x, y = centroid_point(mask)
    assert inside(mask, (x, y))
    d = np.hypot(x - com[0], y - com[1])
    all_d = np.hypot(xs + 0.5 - com[0], ys + 0.5 - com[1])
    assert d == pytest.approx(all_d.min())


@pytest.mark.parametrize("mask", [ring(), rect(), rect(rows=(0, 40), cols=(0, 3))])
def test_random_and_interior_inside(mask):
    for ann_id in range(30):
        assert inside(mask, sample_point(mask, "random", seed=7, ann_id=ann_id))
    assert inside(mask, interior_point(mask))


def test_random_is_seeded_per_annotation():
    mask = ring()
    a = [sample_point(mask, "random", seed=1, ann_id=i) for i in range(10)]
    b = [sample_point(mask, "random", seed=1, ann_id=i) for i in reversed(range(10))][::-1]
    assert a == b, "independent of processing order"
    assert len(set(a)) > 5
    assert a != [sample_point(mask, "random", seed=2, ann_id=i) for i in range(10)]
    assert random_point(mask, np.random.default_rng(0)) == random_point(mask, np.random.default_rng(0))


def test_interior_is_farthest_from_boundary():
    x, y = interior_point(ring())
    # Mid-radius of the ring, 22.5 px from its centre (60.5, 50.5) give or take a pixel.
    assert abs(np.hypot(x - 60.5, y - 50.5) - 22.5) <= 1.5
    # Image border counts as boundary: a mask filling the image gets its centre.
    assert interior_point(np.ones((9, 9), bool)) == (4.5, 4.5)


def test_errors():
    with pytest.raises(ValueError, match="empty"):
        centroid_point(np.zeros((5, 5), bool))
    with pytest.raises(ValueError, match="Unknown point rule"):
        sample_point(rect(), "corner")
