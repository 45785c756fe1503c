"""Point-guided proposal filter: hand-built cases with a known answer, and batched == per-point loop."""
import math

import pytest
import torch

from reference_point_filter import reference_select_point_masks
from wssis_d2.modeling.grid import points_to_cells
from wssis_d2.modeling.level_choice import argmax_finest, oracle_size_levels
from wssis_d2.modeling.point_filter import PointMaskSelection, select_point_masks
from wssis_d2.modeling.point_postprocess import point_mask_nms, postprocess_point_masks

GRIDS = (8, 6, 4, 3, 2)
STRIDES = (8, 8, 16, 32, 32)
SCALE_RANGES = ((1, 96), (48, 192), (96, 384), (192, 768), (384, 2048))
INPUT_HW = (64, 64)  # padded input; mask features are 16 x 16
FEAT = 16
NUM_CLASSES = 3
# Mask-feature channels of the hand-built scene, +1 inside a region and -1 outside, so that a kernel
# with value a on channel q gives sigmoid(a) inside region q and sigmoid(-a) outside.
QUADRANTS = {0: (slice(0, 8), slice(0, 8)), 1: (slice(0, 8), slice(8, 16)),
             2: (slice(8, 16), slice(0, 8)), 3: (slice(8, 16), slice(8, 16))}
BLOB8 = 4  # 2 x 4 = 8 pixels: area == stride of levels 0/1, hence empty everywhere
BLOB9 = 5  # 3 x 3 = 9 pixels: non-empty on levels 0/1 (stride 8), empty on levels 2-4
NUM_EMBED = 6


def sig(x):
    return 1.0 / (1.0 + math.exp(-x))


def make_scene():
    """Zero kernels (prob 0.5 everywhere: nothing > 0.5, every mask empty) and low class logits."""
    feats = -torch.ones(NUM_EMBED, FEAT, FEAT)
    for q, (rs, cs) in QUADRANTS.items():
        feats[q, rs, cs] = 1.0
    feats[BLOB8, 0:2, 0:4] = 1.0
    feats[BLOB9, 4:7, 4:7] = 1.0
    cate = [torch.full((NUM_CLASSES, s, s), -4.0) for s in GRIDS]
    kern = [torch.zeros(NUM_EMBED, s, s) for s in GRIDS]
    return cate, kern, feats


def cell_of(xy, level):
    return tuple(int(v) for v in points_to_cells(torch.tensor([xy], dtype=torch.float), INPUT_HW, GRIDS[level])[0])


def put(cate, kern, xy, level, cls, logit, channel, strength):
    """Give the cell of point ``xy`` on ``level`` a class logit and a mask of ``channel`` with ``strength``."""
    r, c = cell_of(xy, level)
    cate[level][cls, r, c] = logit
    kern[level][:, r, c] = 0.0
    kern[level][channel, r, c] = strength


def run(cate, kern, feats, pts, classes, **kw):
    pts = torch.as_tensor(pts, dtype=torch.float).reshape(-1, 2)
    classes = torch.as_tensor(classes, dtype=torch.long)
    out = select_point_masks(cate, kern, feats, pts, classes, INPUT_HW, STRIDES, prune=False, **kw)
    ref = reference_select_point_masks(cate, kern, feats, pts, classes, INPUT_HW, STRIDES, **kw)
    assert_same(out, ref)
    pruned = select_point_masks(cate, kern, feats, pts, classes, INPUT_HW, STRIDES, **kw)
    assert_same(pruned, ref, all_levels_allowed=kw.get("mode", "adaptive") == "adaptive")
    return out


def assert_same(out, ref, atol=1e-6, all_levels_allowed=True):
    assert torch.equal(out.collided, ref.collided)
    assert torch.equal(out.shared, ref.shared)
    assert torch.equal(out.cross_class, ref.cross_class)
    assert torch.equal(out.level, ref.level)
    assert torch.equal(out.valid, ref.valid)
    assert torch.equal(out.cell, ref.cell)
    torch.testing.assert_close(out.score, ref.score, atol=atol, rtol=0)
    torch.testing.assert_close(out.mask_prob, ref.mask_prob, atol=atol, rtol=0)
    # Candidates not evaluated (NaN) are levels the mode does not allow, or, when every level is allowed
    # (adaptive), candidates the reference scores below the winner.
    evaluated = ~torch.isnan(out.level_scores)
    torch.testing.assert_close(out.level_scores[evaluated], ref.level_scores[evaluated], atol=atol, rtol=0)
    if all_levels_allowed:
        winner = ref.score.where(ref.valid, torch.full_like(ref.score, float("-inf")))[:, None]
        assert (ref.level_scores[~evaluated] < winner.expand_as(ref.level_scores)[~evaluated]).all()


XY = (40.0, 40.0)  # cells: L0 (5, 5), L1 (3, 3), L2 (2, 2), L3 (1, 1), L4 (1, 1)


def test_adaptive_picks_best_scoring_level():
    cate, kern, feats = make_scene()
    put(cate, kern, XY, 0, 1, 4.0, 3, 0.3)  # confident class, weak mask: 0.98 * 0.57
    put(cate, kern, XY, 1, 1, 0.0, 3, 8.0)  # unsure class, sharp mask: 0.5 * 1.0
    put(cate, kern, XY, 2, 1, 4.0, 3, 8.0)  # both: the right answer
    put(cate, kern, XY, 3, 1, 2.0, 3, 2.0)
    put(cate, kern, XY, 4, 1, 2.0, 3, 2.0)
    out = run(cate, kern, feats, [XY], [1])
    assert out.level.tolist() == [2] and out.valid.tolist() == [True]
    assert out.cell.tolist() == [[2, 2]]
    assert out.score.item() == pytest.approx(sig(4) * sig(8), abs=1e-6)
    expected = [sig(4) * sig(0.3), sig(0) * sig(8), sig(4) * sig(8), sig(2) * sig(2), sig(2) * sig(2)]
    assert out.level_scores[0].tolist() == pytest.approx(expected, abs=1e-6)
    mask = out.mask_prob[0] > 0.5
    assert mask[8:, 8:].all() and mask.sum() == 64  # quadrant 3


def test_class_index_zero_and_classes_select_different_levels():
    cate, kern, feats = make_scene()
    put(cate, kern, XY, 2, 0, 4.0, 3, 8.0)
    put(cate, kern, XY, 3, 1, 4.0, 2, 8.0)
    out = run(cate, kern, feats, [XY, XY], [0, 1])
    assert out.level.tolist() == [2, 3]
    assert out.score.tolist() == pytest.approx([sig(4) * sig(8)] * 2, abs=1e-6)
    assert (out.mask_prob[0] > 0.5)[8:, 8:].all() and (out.mask_prob[1] > 0.5)[8:, :8].all()
    # class 2 has logit -4 everywhere: still a mask (no score threshold), with a low score
    low = run(cate, kern, feats, [XY], [2])
    assert low.level.tolist() == [2] and low.score.item() == pytest.approx(sig(-4) * sig(8), abs=1e-6)


def test_fixed_mode():
    cate, kern, feats = make_scene()
    put(cate, kern, XY, 2, 1, 4.0, 3, 8.0)
    put(cate, kern, XY, 3, 1, 0.0, 2, 1.0)
    out = run(cate, kern, feats, [XY], [1], mode="fixed", level=3)
    assert out.level.tolist() == [3] and out.cell.tolist() == [[1, 1]]
    assert out.score.item() == pytest.approx(sig(0) * sig(1), abs=1e-6)
    empty = run(cate, kern, feats, [XY], [1], mode="fixed", level=0)
    assert empty.valid.tolist() == [False] and empty.level.tolist() == [-1]
    last = run(cate, kern, feats, [XY], [1], mode="fixed", level=-1)  # python-style index of level 4
    assert last.valid.tolist() == [False]
    with pytest.raises(ValueError):
        select_point_masks(cate, kern, feats, torch.zeros(1, 2), torch.zeros(1, dtype=torch.long),
                           INPUT_HW, STRIDES, mode="fixed", level=5)


def test_oracle_size_mode_takes_the_level_of_the_size_never_the_score():
    cate, kern, feats = make_scene()
    for level, logit in enumerate([6.0, 1.0, 2.0, 0.5, 0.2]):  # level 0 best overall, then 2, 1, 3, 4
        put(cate, kern, XY, level, 0, logit, 3, 8.0)
    sizes = [30.0, 60.0, 100.0, 170.0, 300.0, 600.0, 3000.0, 0.5]
    # centres sqrt(lo * hi): 9.8, 96, 192, 384, 905. 30 -> {0}; 60 in {0, 1}: nearer 96 (log) -> 1;
    # 100 in {1, 2}: nearer 96 -> 1 although level 2 scores higher; 170 in {1, 2} -> 2; 300 in {2, 3} -> 3;
    # 600 in {3, 4} -> 4; 3000 in no range: nearest 4; 0.5: nearest 0
    out = run(cate, kern, feats, [XY] * len(sizes), [0] * len(sizes), mode="oracle_size",
              gt_sizes=torch.tensor(sizes), scale_ranges=SCALE_RANGES, collision_rule="share")
    assert out.level.tolist() == [0, 1, 1, 2, 3, 4, 4, 0]
    # the oracle's level empty -> no mask (no other level to fall back to: the score never decides)
    kern[3].zero_()
    out = run(cate, kern, feats, [XY] * 2, [0] * 2, mode="oracle_size",
              gt_sizes=torch.tensor([300.0, 30.0]), scale_ranges=SCALE_RANGES, collision_rule="share")
    assert out.level.tolist() == [-1, 0] and out.valid.tolist() == [False, True]


def test_oracle_size_levels():
    allowed = oracle_size_levels(torch.tensor([48.0, 96.0, 2500.0, 0.0, 1e9]), SCALE_RANGES)
    assert allowed.tolist() == [
        [False, True, False, False, False],  # 48 in [1, 96) and [48, 192): log-nearer 96 than 9.8
        [False, True, False, False, False],  # 96 is the upper bound of level 0 (half-open): in 1 and 2
        [False, False, False, False, True],
        [True, False, False, False, False],
        [False, False, False, False, True],
    ]
    # open-ended last range: its centre counts as its lower bound
    allowed = oracle_size_levels(torch.tensor([100.0, 1000.0]), [(1, 64), (32, float("inf"))])
    assert allowed.tolist() == [[False, True], [False, True]]


def test_ties_go_to_the_finer_level():
    cate, kern, feats = make_scene()
    put(cate, kern, XY, 1, 0, 3.0, 3, 8.0)
    put(cate, kern, XY, 3, 0, 3.0, 3, 8.0)
    out = run(cate, kern, feats, [XY], [0])
    assert out.level_scores[0, 1] == out.level_scores[0, 3]
    assert out.level.tolist() == [1]
    level, valid = argmax_finest(torch.tensor([[0.5, 0.7, 0.7, 0.1, 0.7],
                                                [0.2, 0.2, 0.2, 0.2, 0.2],
                                                [-math.inf, -math.inf, 0.3, -math.inf, 0.3],
                                                [-math.inf] * 5]))
    assert level.tolist()[:3] == [1, 0, 2] and valid.tolist() == [True, True, True, False]


def test_empty_masks_give_no_label():
    cate, kern, feats = make_scene()
    for level in range(5):
        r, c = cell_of(XY, level)
        cate[level][0, r, c] = 8.0  # a confident class does not rescue an empty mask
    out = run(cate, kern, feats, [XY], [0])
    assert out.valid.tolist() == [False] and out.level.tolist() == [-1]
    assert out.cell.tolist() == [[-1, -1]] and out.score.tolist() == [0.0]
    assert not out.mask_prob.any() and torch.isinf(out.level_scores).all()


def test_small_masks_are_empty_before_selection():
    cate, kern, feats = make_scene()
    put(cate, kern, XY, 0, 0, 8.0, BLOB8, 8.0)  # area 8 == stride 8: empty although the best score
    put(cate, kern, XY, 1, 0, 8.0, BLOB9, 8.0)  # area 9 > stride 8: the winner
    put(cate, kern, XY, 2, 0, 8.0, BLOB9, 9.0)  # area 9 <= stride 16: empty although better
    put(cate, kern, XY, 4, 0, -2.0, 3, 8.0)  # large mask, weak class
    out = run(cate, kern, feats, [XY], [0])
    assert out.level.tolist() == [1]
    assert torch.isinf(out.level_scores[0, [0, 2, 3]]).all()
    kern[1].zero_()
    kern[4].zero_()
    assert run(cate, kern, feats, [XY], [0]).valid.tolist() == [False]


def _same_cell_scene():
    cate, kern, feats = make_scene()
    a, b, other = (9.0, 9.0), (10.5, 10.0), (50.0, 10.0)
    assert all(cell_of(a, l) == cell_of(b, l) for l in range(5))
    put(cate, kern, a, 2, 1, 4.0, 0, 8.0)  # best cell of a and b: quadrant 0
    put(cate, kern, a, 0, 1, 2.0, 1, 8.0)  # their second best: level 0, quadrant 1, weaker class
    put(cate, kern, other, 2, 1, 3.0, 0, 8.0)  # another cell, same class, same mask
    return cate, kern, feats, [a, b, other, a]


def test_same_cell_share_rule_gives_one_mask_to_all():
    cate, kern, feats, pts = _same_cell_scene()
    out = run(cate, kern, feats, pts, [1, 1, 1, 1], collision_rule="share")
    assert out.valid.all() and out.level.tolist() == [2, 2, 2, 2]
    assert out.cell.tolist() == [[0, 0], [0, 0], [0, 3], [0, 0]]
    assert torch.equal(out.mask_prob[0], out.mask_prob[1]) and torch.equal(out.mask_prob[0], out.mask_prob[3])
    assert out.collided.tolist() == [False, True, False, True]  # counted, not resolved
    classes = torch.tensor([1, 1, 1, 1])
    labels = postprocess_point_masks(out, classes, STRIDES, INPUT_HW, INPUT_HW)
    assert labels.indices.tolist() == [0, 1, 2, 3]  # NMS is off by default
    labels = postprocess_point_masks(out, classes, STRIDES, INPUT_HW, INPUT_HW, nms_iou=0.5)
    assert labels.indices.tolist() == [0, 1, 3]  # same cell never suppressed; the other cell loses
    labels = postprocess_point_masks(out, torch.tensor([1, 1, 2, 1]), STRIDES, INPUT_HW, INPUT_HW, nms_iou=0.5)
    assert labels.indices.tolist() == [0, 1, 2, 3]  # class-aware


def test_same_cell_reassign_rule_nearest_keeps_others_move():
    cate, kern, feats, pts = _same_cell_scene()
    # level-2 cell (0, 0) covers [0, 16) x [0, 16): centre (8, 8). a = (9, 9) (index 0) and its exact
    # copy (index 3) are nearest; a keeps it (lower index). b = (10.5, 10) and the copy move to their next
    # best level 0, cell (1, 1), centre (12, 12): b is nearer and takes it. The copy has no free level
    # left: it falls back to a's cell and the mask is split between them (identical points: every pixel
    # is equidistant, so both keep all of it). "other" is alone in its cell.
    out = run(cate, kern, feats, pts, [1, 1, 1, 1], collision_rule="reassign")
    assert out.valid.all()
    assert out.level.tolist() == [2, 0, 2, 2]
    assert out.collided.tolist() == [False, True, False, True]
    assert out.shared.tolist() == [True, False, False, True]
    keys = {(int(l), tuple(c)) for l, c in zip(out.level[:3], out.cell[:3].tolist())}
    assert len(keys) == 3  # a, b and other each have their own (level, cell)
    assert not torch.equal(out.mask_prob[0], out.mask_prob[1])
    # points of other classes collide too (a cell has one mask for all classes), and are counted apart:
    # b (class 2) and the copy of a (class 0) have logit -4 on every level, so both take the finer of
    # their two equal-maskness levels, level 0 cell (1, 1); b is nearer its centre and keeps it, the copy
    # finds level 2 held by a (class 1) and splits the level-0 mask with b.
    out = run(cate, kern, feats, pts, [1, 2, 1, 0], collision_rule="reassign")
    assert out.level.tolist() == [2, 0, 2, 0] and out.cell.tolist() == [[0, 0], [1, 1], [0, 3], [1, 1]]
    assert out.collided.tolist() == [False, False, False, True]
    assert out.cross_class.tolist() == [False, True, False, True]
    assert out.shared.tolist() == [False, True, False, True]
    share = run(cate, kern, feats, pts, [1, 2, 1, 0], collision_rule="share")
    assert share.cross_class.tolist() == [False, True, False, True] and not share.shared.any()
    assert torch.equal(share.mask_prob[1], share.mask_prob[3])  # the published behaviour: one mask twice


def test_same_cell_without_a_free_level_splits_the_mask():
    cate, kern, feats, pts = _same_cell_scene()
    for rule in ("reassign", "split"):  # fixed mode: one allowed level, no other to move to
        out = run(cate, kern, feats, pts[:2], [1, 1], mode="fixed", level=2, collision_rule=rule)
        assert out.level.tolist() == [2, 2] and out.shared.tolist() == [True, True]
        whole = run(cate, kern, feats, pts[:1], [1], mode="fixed", level=2).mask_prob[0]
        m0, m1 = out.mask_prob[0] > 0.5, out.mask_prob[1] > 0.5
        assert torch.equal(m0 | m1, whole > 0.5)  # together they cover the cell mask ...
        # ... and split it, except for the 3 x 3 block around each point's nearest pixel (both points lie
        # in 1/4-res pixel (2, 2)), which each keeps
        both = torch.zeros_like(m0)
        both[1:4, 1:4] = True
        assert torch.equal(m0 & m1, both & (whole > 0.5)) and m0.sum() > 9 and m1.sum() > 9
    # split rule in adaptive mode: no move to level 0, the colliding points split their first choice
    out = run(cate, kern, feats, pts, [1, 1, 1, 1], collision_rule="split")
    assert out.level.tolist() == [2, 2, 2, 2] and out.shared.tolist() == [True, True, False, True]


def test_tiny_mask_rule_after_chooses_first_then_drops():
    cate, kern, feats = make_scene()
    put(cate, kern, XY, 0, 0, 8.0, BLOB8, 8.0)  # best score, area 8 == stride 8: tiny
    put(cate, kern, XY, 1, 0, 2.0, BLOB9, 8.0)  # weaker, area 9 > 8
    before = run(cate, kern, feats, [XY], [0], tiny_mask_rule="before")
    after = run(cate, kern, feats, [XY], [0], tiny_mask_rule="after")
    assert before.level.tolist() == [1] and after.level.tolist() == [0]
    labels = postprocess_point_masks(after, torch.tensor([0]), STRIDES, INPUT_HW, INPUT_HW)
    assert labels.indices.numel() == 0  # the tiny chosen mask is dropped: the point gets no mask
    labels = postprocess_point_masks(before, torch.tensor([0]), STRIDES, INPUT_HW, INPUT_HW)
    assert labels.indices.tolist() == [0]


def test_points_on_the_border_and_in_the_padding():
    cate, kern, feats = make_scene()
    border, beyond, padding = (64.0, 0.0), (70.0, 66.0), (60.0, 55.0)  # image 40 x 50 inside 64 x 64
    put(cate, kern, border, 0, 2, 3.0, 1, 8.0)
    put(cate, kern, beyond, 0, 2, 3.0, 3, 8.0)
    put(cate, kern, padding, 0, 2, 3.0, 3, 7.0)
    out = run(cate, kern, feats, [border, beyond, padding], [2, 2, 2])
    assert out.level.tolist() == [0, 0, 0]
    assert out.cell.tolist() == [[0, 7], [7, 7], [6, 7]]
    assert out.score.tolist() == pytest.approx([sig(3) * sig(8), sig(3) * sig(8), sig(3) * sig(7)], abs=1e-6)


def test_input_checks_and_no_points():
    cate, kern, feats = make_scene()
    out = run(cate, kern, feats, torch.zeros(0, 2), [])
    assert out.mask_prob.shape == (0, FEAT, FEAT) and out.level_scores.shape == (0, 5)
    labels = postprocess_point_masks(out, torch.zeros(0, dtype=torch.long), STRIDES, INPUT_HW, (50, 40))
    assert labels.masks.shape == (0, 50, 40)
    with pytest.raises(ValueError):
        select_point_masks(cate, kern, feats, torch.zeros(1, 2), torch.tensor([NUM_CLASSES]), INPUT_HW, STRIDES)
    with pytest.raises(ValueError):
        select_point_masks(cate, kern, feats, torch.zeros(1, 2), torch.tensor([0]), INPUT_HW, STRIDES, mode="x")
    with pytest.raises(ValueError):
        select_point_masks(cate, kern, feats, torch.zeros(1, 2), torch.tensor([0]), INPUT_HW, STRIDES, mode="oracle_size")


def random_inputs(seed, num_points, feat_hw=(12, 16), grids=GRIDS, num_classes=4, num_embed=8):
    g = torch.Generator().manual_seed(seed)
    feat_h, feat_w = feat_hw
    input_hw = (feat_h * 4, feat_w * 4)
    feats = torch.randn(num_embed, feat_h, feat_w, generator=g, dtype=torch.float64)
    feats[0] = 1.0  # a constant channel: its kernel weight acts as a bias, making some masks empty
    cate = [torch.randn(num_classes, s, s, generator=g, dtype=torch.float64) * 3 for s in grids]
    kern = [torch.randn(num_embed, s, s, generator=g, dtype=torch.float64) * 2 for s in grids]
    for k in kern:
        k[0] -= 2.5
        k[0] -= 50.0 * (torch.rand(k.shape[1:], generator=g) < 0.4)  # dead cells: empty masks
    pts = torch.rand(num_points, 2, generator=g, dtype=torch.float64) * torch.tensor(input_hw[::-1]) * 1.05
    if num_points > 4:
        pts[1] = pts[0]  # same cell
        pts[2] = torch.tensor([input_hw[1], 0.0])  # on the border
        for k, s in zip(kern, grids):  # point 3 hits a dead cell on every level: no mask
            r, c = points_to_cells(pts[3:4], input_hw, s)[0]
            k[0, r, c] = -60.0
    classes = torch.randint(0, num_classes, (num_points,), generator=g)
    if num_points > 4:
        classes[1] = classes[0]
    sizes = torch.rand(num_points, generator=g, dtype=torch.float64) * 2500
    return cate, kern, feats, pts, classes, input_hw, sizes


@pytest.mark.parametrize("rules", [("reassign", "before"), ("split", "before"), ("share", "before"),
                                   ("reassign", "after")])
@pytest.mark.parametrize("mode", ["adaptive", "fixed", "oracle_size"])
def test_batched_equals_per_point_loop(mode, rules):
    levels_seen, invalid_seen, pruned_seen, collided_seen = set(), 0, 0, 0
    for seed, num_points in [(0, 1), (1, 17), (2, 50), (3, 50), (4, 120)]:
        cate, kern, feats, pts, classes, input_hw, sizes = random_inputs(seed, num_points)
        kw = dict(mode=mode, level=2, gt_sizes=sizes, scale_ranges=SCALE_RANGES, collision_rule=rules[0],
                  tiny_mask_rule=rules[1])
        out = select_point_masks(cate, kern, feats, pts, classes, input_hw, STRIDES, **kw)
        ref = reference_select_point_masks(cate, kern, feats, pts, classes, input_hw, STRIDES, **kw)
        assert_same(out, ref, atol=1e-12, all_levels_allowed=mode == "adaptive")
        full = select_point_masks(cate, kern, feats, pts, classes, input_hw, STRIDES, prune=False, **kw)
        assert_same(full, ref, atol=1e-12)
        assert not torch.isnan(full.level_scores).any()
        pruned_seen += int(torch.isnan(out.level_scores).sum())
        # tiny memory budget: chunked candidates and recomputed chosen masks, same answer
        chunked = select_point_masks(cate, kern, feats, pts, classes, input_hw, STRIDES,
                                     max_chunk_pixels=3 * feats[0].numel(), **kw)
        assert_same(chunked, ref, atol=1e-12, all_levels_allowed=mode == "adaptive")
        levels_seen |= set(out.level[out.valid].tolist())
        invalid_seen += int((~out.valid).sum())
        collided_seen += int(out.collided.sum())
    assert collided_seen > 0  # the random scenes exercise collisions ...
    assert invalid_seen > 0 or rules[1] == "after"  # ... empty masks ...
    assert len(levels_seen) >= (1 if mode == "fixed" else 3)  # ... and several levels
    assert pruned_seen > 0  # ... and candidates the bound skips


def test_float32_matches_reference():
    cate, kern, feats, pts, classes, input_hw, _ = random_inputs(7, 40)
    cate, kern, feats = [c.float() for c in cate], [k.float() for k in kern], feats.float()
    out = select_point_masks(cate, kern, feats, pts.float(), classes, input_hw, STRIDES)
    ref = reference_select_point_masks(cate, kern, feats, pts.float(), classes, input_hw, STRIDES)
    assert out.score.dtype == torch.float32
    assert_same(out, ref, atol=1e-5)


# ------------------------------------------------------------------------------------ post-processing
def make_selection(masks, levels, scores, valid=None):
    masks = torch.stack(masks).float()
    n = masks.shape[0]
    levels = torch.tensor(levels)
    valid = torch.ones(n, dtype=torch.bool) if valid is None else torch.tensor(valid)
    return PointMaskSelection(
        level=torch.where(valid, levels, -1), cell=torch.arange(2 * n).reshape(n, 2),
        score=torch.tensor(scores), mask_prob=masks, valid=valid, level_scores=torch.zeros(n, 5),
    )


def block(r0, r1, c0, c1, hw=(FEAT, FEAT)):
    m = torch.zeros(hw)
    m[r0:r1, c0:c1] = 1.0
    return m


def test_postprocess_area_filter_and_cap():
    sel = make_selection(
        [block(0, 2, 0, 4), block(0, 3, 0, 3), block(0, 3, 0, 3), block(0, 8, 0, 8), block(8, 16, 0, 8)],
        levels=[0, 1, 2, 4, 3], scores=[0.9, 0.8, 0.7, 0.6, 0.5], valid=[True, True, True, True, False],
    )
    classes = torch.zeros(5, dtype=torch.long)
    labels = postprocess_point_masks(sel, classes, STRIDES, INPUT_HW, INPUT_HW)
    # area 8 <= 8 dropped; area 9 > 8 kept; area 9 <= 16 dropped; 64 > 32 kept; invalid dropped
    assert labels.indices.tolist() == [1, 3] and labels.levels.tolist() == [1, 4]
    assert labels.scores.tolist() == pytest.approx([0.8, 0.6])

    sel = make_selection([block(0, 8, 0, 8)] * 5, levels=[0] * 5, scores=[0.1, 0.9, 0.3, 0.9, 0.5])
    labels = postprocess_point_masks(sel, classes, STRIDES, INPUT_HW, INPUT_HW, max_per_image=3)
    assert labels.indices.tolist() == [1, 3, 4]  # top 3 scores, returned in point order


def test_postprocess_geometry_upsample_crop_resize():
    # 1/4-res block rows [2, 6), cols [4, 12) -> padded input rows [8, 24), cols [16, 48);
    # image 48 x 40 (h, w) crops columns to [16, 40); output x2 -> rows [16, 48), cols [32, 80)
    sel = make_selection([block(2, 6, 4, 12)], levels=[0], scores=[0.9])
    labels = postprocess_point_masks(sel, torch.tensor([0]), STRIDES, INPUT_HW, (48, 40), (96, 80))
    mask = labels.masks[0]
    assert labels.masks.dtype == torch.bool and mask.shape == (96, 80)
    rows = torch.nonzero(mask.any(1)).squeeze(1)
    cols = torch.nonzero(mask.any(0)).squeeze(1)
    assert abs(rows.min().item() - 16) <= 1 and abs(rows.max().item() - 47) <= 1
    assert abs(cols.min().item() - 32) <= 1 and cols.max().item() == 79  # cut at the image border
    # bilinear rounds the corners only: the cross through the block is solid, nothing outside the box
    assert mask[16:48, 40:80].all() and mask[20:44, 32:80].all()
    assert mask.sum() == mask[15:49, 31:80].sum()


def reference_greedy_nms(masks, scores, classes, thr, exempt):
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    kept = []
    for i in order:
        ok = True
        for j in kept:
            if classes[i] != classes[j] or exempt[i, j]:
                continue
            inter = (masks[i] & masks[j]).sum().item()
            union = (masks[i] | masks[j]).sum().item()
            if union and inter / union > thr:
                ok = False
                break
        if ok:
            kept.append(i)
    return sorted(kept)


def test_nms_equals_greedy_loop_including_chains():
    # chain: A suppresses B, B would suppress C, but B is gone so C survives (greedy, not Fast NMS)
    a, b, c = block(0, 8, 0, 8), block(0, 8, 2, 10), block(0, 8, 5, 13)
    keep = point_mask_nms(torch.stack([a, b, c]).bool(), torch.tensor([0.9, 0.8, 0.7]),
                          torch.zeros(3, dtype=torch.long), 0.5)
    assert keep.tolist() == [True, False, True]
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        n = 30
        r0 = torch.randint(0, 10, (n,), generator=g)
        c0 = torch.randint(0, 10, (n,), generator=g)
        masks = torch.stack([block(int(r), int(r) + 6, int(c), int(c) + 6) for r, c in zip(r0, c0)]).bool()
        scores = torch.randint(0, 10, (n,), generator=g).float()  # ties on purpose
        classes = torch.randint(0, 2, (n,), generator=g)
        exempt = torch.rand(n, n, generator=g) < 0.1
        exempt = exempt | exempt.t()
        keep = point_mask_nms(masks, scores, classes, 0.5, exempt=exempt)
        expected = reference_greedy_nms(masks, scores, classes, 0.5, exempt)
        assert torch.nonzero(keep).squeeze(1).tolist() == expected
        assert len(expected) < n
