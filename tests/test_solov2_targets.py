"""Target assignment of SOLOv2 on hand-made instances: which level, which cells, which masks."""
import torch

from wssis_d2.modeling.grid import cells_to_index, points_to_cells
from wssis_d2.modeling.targets import assign_level_targets, downsample_masks, mask_centers

GRIDS = [16, 12, 8]
RANGES = [(1, 48), (24, 96), (96, 2048)]


def _box_mask(h, w, x0, y0, x1, y1):
    m = torch.zeros(h, w, dtype=torch.bool)
    m[y0:y1, x0:x1] = True
    return m


def _targets(masks, classes, input_hw=(128, 128), sigma=0.2, grids=GRIDS, ranges=RANGES):
    boxes = []
    for m in masks:
        ys, xs = m.nonzero(as_tuple=True)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    masks = torch.stack(masks)
    return assign_level_targets(
        masks,
        downsample_masks(masks, 4),
        torch.tensor(classes),
        torch.tensor(boxes, dtype=torch.float32),
        input_hw,
        grids,
        ranges,
        sigma,
        num_classes=5,
    )


def test_points_to_cells_clamps_border_and_padding():
    pts = torch.tensor([[0.0, 0.0], [127.99, 127.99], [128.0, 64.0], [500.0, -3.0]])
    cells = points_to_cells(pts, (128, 128), 8)
    assert cells.tolist() == [[0, 0], [7, 7], [4, 7], [0, 7]]
    assert cells_to_index(cells, 8).tolist() == [0, 63, 39, 7]


def test_mask_centers_continuous_convention():
    m = _box_mask(10, 10, 2, 4, 4, 6)  # columns 2..3, rows 4..5
    assert torch.allclose(mask_centers(m[None]), torch.tensor([[3.0, 5.0]]))


def test_small_instance_goes_to_first_level_only_with_3x3_cells():
    # 40 x 40 box: sqrt(area) = 40, in (1, 48) and (24, 96) but not (96, 2048).
    m = _box_mask(128, 128, 40, 40, 80, 80)
    levels = _targets([m], [3], sigma=1.0)  # sigma 1.0: region = whole box, clipped to 3x3
    # Level 0, S=16: cell size 8 px, center (60, 60) -> cell (7, 7); 3x3 around it.
    pos = levels[0].labels != 5
    rows, cols = pos.nonzero(as_tuple=True)
    assert sorted(set(rows.tolist())) == [6, 7, 8] and sorted(set(cols.tolist())) == [6, 7, 8]
    assert (levels[0].labels[pos] == 3).all()
    assert levels[0].pos_index.numel() == 9
    # Level 1 (S=12) also holds it (overlapping ranges); level 2 does not.
    assert (levels[1].labels != 5).sum() > 0
    assert (levels[2].labels == 5).all() and levels[2].pos_index.numel() == 0


def test_sigma_shrinks_center_region_to_one_cell():
    m = _box_mask(128, 128, 40, 40, 80, 80)
    levels = _targets([m], [1], sigma=0.2)
    # Half-size 0.2 * 40 / 2 = 4 px around (60, 60): x in [56, 64] -> cells 7..8 at 8 px/cell.
    pos = (levels[0].labels != 5).nonzero().tolist()
    assert pos == [[7, 7], [7, 8], [8, 7], [8, 8]]


def test_pos_masks_are_the_downsampled_gt_of_the_owner():
    a = _box_mask(128, 128, 8, 8, 40, 40)
    b = _box_mask(128, 128, 70, 70, 110, 110)
    levels = _targets([a, b], [0, 4])
    t = levels[0]
    for flat, mask in zip(t.pos_index.tolist(), t.pos_masks):
        r, c = divmod(flat, 16)
        owner = a if t.labels[r, c] == 0 else b
        assert torch.equal(mask, downsample_masks(owner[None], 4)[0])
    assert set(t.labels[t.labels != 5].tolist()) == {0, 4}


def test_overlapping_regions_go_to_smaller_instance():
    big = _box_mask(128, 128, 20, 20, 100, 100)  # 80 px, level 1
    small = _box_mask(128, 128, 50, 50, 70, 70)  # 20 px, level 0 and not 1 (< 24)
    small2 = _box_mask(128, 128, 48, 48, 74, 74)  # 26 px, levels 0 and 1
    levels = _targets([big, small2, small], [0, 1, 2], sigma=1.0)
    # Both centres at (60, 60): on level 1 the 3x3 cells around it go to small2 (smaller than big).
    lab1 = levels[1].labels
    assert (lab1[lab1 != 5] == 1).all()
    # On level 0, small beats small2.
    lab0 = levels[0].labels
    assert (lab0[lab0 != 5] == 2).all()


def test_empty_and_no_instances():
    levels = _targets([torch.zeros(128, 128, dtype=torch.bool) | _box_mask(128, 128, 0, 0, 1, 1)], [0])
    # A 1-px instance in the corner still trains one cell of level 0 (its region is its own cell).
    assert [t.pos_index.tolist() for t in levels] == [[0], [], []]
    masks = torch.zeros(0, 128, 128, dtype=torch.bool)
    out = assign_level_targets(
        masks, downsample_masks(masks), torch.zeros(0, dtype=torch.long), torch.zeros(0, 4), (128, 128),
        GRIDS, RANGES, 0.2, 5,
    )
    assert all((t.labels == 5).all() and t.pos_masks.shape == (0, 32, 32) for t in out)


def test_scale_ranges_are_half_open_at_the_boundary():
    # a 48 x 48 box: sqrt(w h) = 48 is the upper bound of level 0 [1, 48) and inside level 1 [24, 96)
    at_bound = _box_mask(128, 128, 10, 10, 58, 58)
    targets = _targets([at_bound], [2])
    assert targets[0].pos_index.numel() == 0
    assert targets[1].pos_index.numel() > 0
    # with the teacher's non-overlapping ranges a boundary instance trains exactly one level
    teacher = [(1, 48), (48, 96), (96, 2048)]
    counts = [t.pos_index.numel() > 0 for t in _targets([at_bound], [2], ranges=teacher)]
    assert counts == [False, True, False]
    just_below = _box_mask(128, 128, 10, 10, 57, 57)  # 47 px
    assert [t.pos_index.numel() > 0 for t in _targets([just_below], [2], ranges=teacher)] == [True, False, False]


def test_mask_targets_are_binary():
    m = torch.zeros(1, 16, 16, dtype=torch.bool)
    m[0, 0:2, 0:4] = True  # block (0, 0): 8 of 16 pixels -> 1; block (0, 1): 0 -> 0
    m[0, 4:5, 4:8] = True  # block (1, 1): 4 of 16 pixels -> 0
    m[0, 8:11, 8:12] = True  # block (2, 2): 12 of 16 -> 1
    down = downsample_masks(m, 4)
    assert set(down.unique().tolist()) <= {0.0, 1.0}
    assert down[0].nonzero().tolist() == [[0, 0], [2, 2]]
    targets = _targets([_box_mask(128, 128, 10, 10, 30, 30)], [1])
    assert set(torch.cat([t.pos_masks.flatten() for t in targets]).unique().tolist()) <= {0.0, 1.0}
