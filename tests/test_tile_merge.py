"""Cross-tile merge of plain tiled inference (wssis_d2.modeling.tiling, tiled_inference): copies of one
object seen from two tiles become one detection, distinct same-class objects (nested, overlapping) on any
kind of seam all stay, and the output does not depend on where the tiles fall. Pure functions on
constructed tile-local detections (what a detector reports in each tile), no model."""
import numpy as np
import pytest
import torch

from detectron2.structures import Boxes, Instances

from wssis_d2.modeling.cropped_masks import CroppedMasks
from wssis_d2.modeling.postprocess import mask_boxes
from wssis_d2.modeling.tiled_inference import TiledInference
from wssis_d2.modeling.tiling import (candidate_pairs, cross_tile_counts, greedy_keep, greedy_keep_sparse,
                                      seam_iou, tile_boxes)

pytestmark = pytest.mark.usefixtures("one_thread_module")


def _rect(hw, x0, y0, x1, y1):
    m = torch.zeros(hw, dtype=torch.bool)
    m[y0:y1, x0:x1] = True
    return m


def _detections(masks, tiles, classes, scores, missed=()):
    """What a detector reports in each tile: the visible part of every object, in tile pixels, except the
    (tile, object) pairs in ``missed``; each copy has its object's score."""
    parts = []
    for t, (x0, y0, x1, y1) in enumerate(tiles.tolist()):
        local = masks[:, y0:y1, x0:x1]
        present = local.flatten(1).any(dim=1)
        for obj in (o for tt, o in missed if tt == t):
            present[obj] = False
        inst = Instances((y1 - y0, x1 - x0))
        inst.pred_masks = local[present]
        inst.scores = scores[present]
        inst.pred_classes = classes[present]
        inst.pred_boxes = Boxes(mask_boxes(inst.pred_masks))
        parts.append(inst)
    return parts


def _mask_set(masks, shift=(0, 0)):
    """Masks (K, H, W) as a sorted list of their pixel sets (hashable), optionally shifted by (dx, dy)."""
    out = []
    for m in masks:
        ys, xs = torch.nonzero(m, as_tuple=True)
        out.append(tuple(sorted(zip((xs - shift[0]).tolist(), (ys - shift[1]).tolist()))))
    return sorted(out)


def _merged(masks, tiles, hw, scores=None, missed=(), classes=None, **kw):
    k = len(masks)
    classes = torch.zeros(k, dtype=torch.long) if classes is None else classes
    scores = torch.linspace(0.9, 0.5, k) if scores is None else torch.tensor(scores)
    parts = _detections(masks, tiles, classes, scores, missed)
    return TiledInference(size=int(tiles[0, 2] - tiles[0, 0]), overlap=56, **kw).combine(parts, tiles, hw)


# One seam: image 128 x 200, tiles of 128 px with overlap 56 -> tile 0 = x [0, 128), tile 1 = x [72, 200);
# both tiles see x in [72, 128). Four tiles: 200 x 200, the 4-way window [72, 128)^2.
HW1, HW4 = (128, 200), (200, 200)
TILES1, TILES4 = tile_boxes(128, 200, 128, 56), tile_boxes(200, 200, 128, 56)

# name: (image size, tiles, [(x0, y0, x1, y1) of the large object L, of the small one s], missed copies)
NESTED = {
    # L whole in tile 0 and cut by tile 1's left border; s inside L, in the shared window; tile 0 misses s:
    # the only s is the one of tile 1, and it lies inside L (intersection over the smaller mask 1)
    "small on the other tile": (HW1, TILES1, [(60, 30, 110, 90), (80, 50, 95, 65)], [(0, 1)]),
    # both whole in both tiles (inside the shared window)
    "both in the overlap": (HW1, TILES1, [(76, 30, 124, 90), (90, 50, 100, 60)], []),
    # s crosses tile 0's right border x = 128 (cut in tile 0, whole in tile 1), L whole in tile 1
    "small cut by a border": (HW1, TILES1, [(100, 30, 160, 90), (120, 50, 136, 62)], []),
    # the same, but tile 1 misses s: the only s is tile 0's cut copy, inside L's copies
    "small cut, seen only cut": (HW1, TILES1, [(100, 30, 160, 90), (120, 50, 136, 62)], [(1, 1)]),
    # L crosses tile 1's left border (cut in tile 1, whole in tile 0), s inside L in the shared window
    "large cut by a border": (HW1, TILES1, [(60, 30, 110, 90), (95, 50, 105, 60)], []),
    # L whole in tile 0 only (cut by tiles 1, 2, 3), s whole in all 4 tiles at their common corner
    "corner of 4 tiles": (HW4, TILES4, [(60, 60, 110, 110), (90, 90, 100, 100)], []),
    "corner, s seen by the others only": (HW4, TILES4, [(60, 60, 110, 110), (90, 90, 100, 100)], [(0, 1)]),
}


@pytest.mark.parametrize("case", sorted(NESTED))
@pytest.mark.parametrize("small_first", [False, True])
def test_nested_same_class_objects_on_every_seam_both_stay(case, small_first):
    hw, tiles, rects, missed = NESTED[case]
    masks = torch.stack([_rect(hw, *r) for r in rects])
    scores = [0.6, 0.9] if small_first else [0.9, 0.6]  # the small one visited first, or the large one
    out = _merged(masks, tiles, hw, scores=scores, missed=missed)
    assert len(out) == 2, case
    large = out.pred_masks[out.pred_masks.flatten(1).sum(1).argmax()]
    assert torch.equal(large, masks[0])  # the large object whole
    small = out.pred_masks[out.pred_masks.flatten(1).sum(1).argmin()]
    if case == "small cut, seen only cut":
        assert torch.equal(small, masks[1] & _rect(hw, 0, 0, 128, 128))  # what tile 0 saw of it
    else:
        assert torch.equal(small, masks[1])


def test_plain_merge_gives_one_whole_detection_per_object_at_its_place():
    """Three objects on 128 x 200: inside tile 0, crossing both tiles' inner borders, inside tile 1."""
    masks = torch.stack([_rect(HW1, 10, 10, 40, 30), _rect(HW1, 95, 50, 140, 80), _rect(HW1, 160, 90, 190, 120)])
    tiler = TiledInference(size=128, overlap=56)
    # the cut copy of object 1 gets the HIGHER score in its tile: the whole copy must still win
    parts = _detections(masks, TILES1, torch.tensor([0, 1, 2]), torch.tensor([0.9, 0.8, 0.7]))
    parts[0].scores[parts[0].pred_classes == 1] = 0.95
    assert sum(len(p) for p in parts) == 4  # object 1 seen in both tiles
    out = tiler.combine(parts, TILES1, HW1)
    assert out.image_size == HW1 and len(out) == 3
    assert sorted(out.pred_classes.tolist()) == [0, 1, 2]
    for k in range(len(out)):
        c = int(out.pred_classes[k])
        assert torch.equal(out.pred_masks[k], masks[c])  # pasted back whole, at the right place
        assert torch.equal(out.pred_boxes.tensor[k], mask_boxes(masks[c:c + 1])[0])
    assert torch.all(out.scores[:-1] >= out.scores[1:])
    # at most max_per_image stay, the best scores (as the untiled decoders keep per image)
    capped = tiler.combine(parts, TILES1, HW1, max_per_image=2)
    assert len(capped) == 2 and capped.scores.tolist() == pytest.approx(out.scores[:2].tolist())
    # two different classes at the same place are not duplicates
    parts = _detections(masks, TILES1, torch.tensor([0, 1, 2]), torch.tensor([0.9, 0.8, 0.7]))
    parts[1].pred_classes[:] = 5
    assert len(tiler.combine(parts, TILES1, HW1)) == 4
    # no detection at all
    empty = [p[:0] for p in parts]
    assert len(tiler.combine(empty, TILES1, HW1)) == 0 and tiler.combine(empty, TILES1, HW1).pred_masks.shape == (0,) + HW1


def test_overlapping_same_class_neighbours_stay():
    # P, Q overlap (IoU 0.2) inside the shared window; R (whole in tile 0, cut by tile 1) overlaps S (whole
    # in both tiles) across tile 1's left border
    rects = [(80, 10, 110, 40), (95, 20, 125, 50), (50, 70, 100, 110), (85, 75, 120, 105)]
    masks = torch.stack([_rect(HW1, *r) for r in rects])
    for scores in ([0.9, 0.8, 0.7, 0.6], [0.6, 0.7, 0.8, 0.9]):
        out = _merged(masks, TILES1, HW1, scores=scores)
        assert _mask_set(out.pred_masks) == _mask_set(masks)


def test_copies_of_one_object_are_merged_whole_copy_kept():
    # A crosses x = 128: whole in tile 1, cut in tile 0 (its cut copy has the higher score); B lies whole in
    # both tiles (two whole copies); C crosses x = 72: whole in tile 0, cut in tile 1
    rects = [(100, 10, 140, 40), (80, 60, 110, 90), (60, 95, 90, 120)]
    masks = torch.stack([_rect(HW1, *r) for r in rects])
    classes = torch.tensor([0, 0, 0])
    parts = _detections(masks, TILES1, classes, torch.tensor([0.5, 0.6, 0.7]))
    assert [len(p) for p in parts] == [3, 3]
    parts[0].scores[0] = 0.99  # tile 0 sees A first (cut): the cut copy scores highest
    tiler = TiledInference(size=128, overlap=56)
    out = tiler.combine(parts, TILES1, HW1)
    assert _mask_set(out.pred_masks) == _mask_set(masks)
    assert tiler.num_merged == 3 and tiler.num_detections == 6  # counted for the log
    # a real detector's copies are not pixel-perfect: 2 px more or less at the seam still merge
    parts[1].pred_masks[1, 60:90, 8:10] = False  # B seen 2 px narrower by tile 1
    # A's cut copy stops 3 px short of tile 0's border: it is not taken for a whole object (the mask-feature
    # cell, 4 px at SCALE 1, is the tolerance), so its seam IoU with the whole copy stays high
    parts[0].pred_masks[0, 10:40, 125:128] = False
    assert len(tiler.combine(parts, TILES1, HW1)) == 3
    # masks kept cut to their boxes (paste off) are the same masks
    cropped = TiledInference(size=128, overlap=56, paste=False).combine(parts, TILES1, HW1)
    assert isinstance(cropped.pred_masks, CroppedMasks)
    assert torch.equal(cropped.pred_masks.to_dense(), tiler.combine(parts, TILES1, HW1).pred_masks)


def _seam(dense, det_tiles, whole, method="auto"):
    """Seam IoU of every counted pair of detections ``dense`` (K, H, W) from tiles ``det_tiles`` (K,)."""
    masks = CroppedMasks.from_dense(dense, tuple(dense.shape[1:]))
    tiles = TILES1 if int(det_tiles.max()) < 2 else TILES4
    classes = torch.zeros(len(dense), dtype=torch.long)
    pairs, inter, in_a, in_b = cross_tile_counts(masks, det_tiles, tiles, classes, method)
    a, b = pairs[:, 0], pairs[:, 1]
    area = masks.areas()
    iou = seam_iou(inter, in_a, in_b, area[a], area[b], whole[a], whole[b])
    return {tuple(sorted(p)): round(float(v), 6) for p, v in zip(pairs.tolist(), iou)}


def test_seam_iou_of_copies_is_one_and_of_nested_objects_is_the_area_ratio():
    obj, small = _rect(HW1, 100, 30, 160, 90), _rect(HW1, 120, 50, 136, 62)
    tile0 = _rect(HW1, 0, 0, 128, 128)
    # detections: obj cut in tile 0, obj whole in tile 1, small whole in tile 1, small cut in tile 0
    dense = torch.stack([obj & tile0, obj, small, small & tile0])
    whole = torch.tensor([False, True, True, False])
    s_in, l_in = 8 * 12, 28 * 60
    expected = {(0, 1): 1.0, (2, 3): 1.0, (0, 2): round(s_in / l_in, 6), (1, 3): round(s_in / l_in, 6)}
    for method in ("auto", "matmul", "gather"):  # a cut + whole copy: 1; nested: |s n S| / |L n S|
        assert _seam(dense, torch.tensor([0, 1, 1, 0]), whole, method) == expected, method
    # whole copies of two objects in different tiles: the ordinary IoU, wherever the window is
    two = torch.stack([_rect(HW1, 80, 10, 110, 40), _rect(HW1, 95, 20, 125, 50)])
    for method in ("matmul", "gather"):
        iou = _seam(two, torch.tensor([0, 1]), torch.tensor([True, True]), method)
        assert iou == {(0, 1): round(15 * 20 / (900 + 900 - 300), 6)}


def test_cross_tile_counts_agree_between_matrix_product_and_gathers():
    """Many large overlapping masks (what an untrained model gives) and small ones: the same pairs and counts."""
    g = torch.Generator().manual_seed(3)
    tiles = TILES4
    dense, tile_of = [], []
    for t, (x0, y0, x1, y1) in enumerate(tiles.tolist()):
        for _ in range(12):
            w, h = (int(v) for v in torch.randint(4, 120, (2,), generator=g))
            ox, oy = x0 + int(torch.randint(0, 128 - w + 1, (1,), generator=g)), y0 + int(
                torch.randint(0, 128 - h + 1, (1,), generator=g))
            m = _rect(HW4, ox, oy, ox + w, oy + h) & (torch.rand(HW4, generator=g) < 0.7)
            dense.append(m)
            tile_of.append(t)
    masks = CroppedMasks.from_dense(torch.stack(dense), HW4)
    tile_of, classes = torch.tensor(tile_of), torch.randint(0, 2, (len(dense),), generator=g)
    results = []
    for method in ("auto", "matmul", "gather"):
        pairs, inter, in_a, in_b = cross_tile_counts(masks, tile_of, tiles, classes, method)
        results.append(sorted(zip(map(tuple, pairs.tolist()), inter.tolist(), in_a.tolist(), in_b.tolist())))
    assert len(results[0]) > 50 and results[0] == results[1] == results[2]
    d = torch.stack(dense)
    for (a, b), inter, in_a, _ in results[0][:20]:  # against the dense masks
        assert tile_of[a] != tile_of[b] and classes[a] == classes[b]
        assert inter == int((d[a] & d[b]).sum()) > 0
        x0, y0 = torch.maximum(tiles[tile_of[a], :2], tiles[tile_of[b], :2]).tolist()
        x1, y1 = torch.minimum(tiles[tile_of[a], 2:], tiles[tile_of[b], 2:]).tolist()
        assert in_a == int(d[a, y0:y1, x0:x1].sum())


def test_output_does_not_depend_on_the_tile_grid():
    """A perfect detector on a crowded scene with nested and overlapping same-class objects, each smaller
    than the overlap less twice the border tolerance: the merged output is exactly the set of objects, for
    three tile sizes / overlaps and a shifted image."""
    rng = np.random.default_rng(0)
    hw = (260, 300)
    masks, classes = [], []
    while len(masks) < 120:
        nested = masks and rng.random() < 0.25
        if nested:  # a small object inside an earlier one, same class
            k = int(rng.integers(len(masks)))
            ys, xs = torch.nonzero(masks[k], as_tuple=True)
            x0, y0 = int(xs.min()), int(ys.min())
            w, h = int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1
            if min(w, h) < 10:
                continue
            sw, sh = int(rng.integers(3, w // 2 + 1)), int(rng.integers(3, h // 2 + 1))
            ox, oy = x0 + int(rng.integers(0, w - sw + 1)), y0 + int(rng.integers(0, h - sh + 1))
            m, c = _rect(hw, ox, oy, ox + sw, oy + sh), classes[k]
        else:
            w, h = (int(v) for v in rng.integers(6, 21, 2))  # < the smallest overlap (30) less 2 x 4 px
            x, y = int(rng.integers(0, hw[1] - w)), int(rng.integers(0, hw[0] - h))
            yy, xx = torch.meshgrid(torch.arange(hw[0]), torch.arange(hw[1]), indexing="ij")
            m = ((xx - x - w / 2) / (w / 2)) ** 2 + ((yy - y - h / 2) / (h / 2)) ** 2 <= 1  # an ellipse
            c = int(rng.integers(0, 2))
        # distinct objects: same-class overlaps below IoU 0.4 and nested ones at most 0.4 of the larger
        same = [o for o, oc in zip(masks, classes) if oc == c]
        if same:
            s = torch.stack(same).flatten(1)
            inter = (s & m.flatten()).sum(1).float()
            area = s.sum(1).float()
            if ((inter / (area + m.sum() - inter) > 0.4) | ((inter >= m.sum() - 0.5) & (m.sum() > 0.4 * area))
                    | ((inter >= area - 0.5) & (area > 0.4 * m.sum()))).any():
                continue
        masks.append(m)
        classes.append(c)
    masks, classes = torch.stack(masks), torch.tensor(classes)
    scores = torch.from_numpy(rng.random(len(masks))).float()
    truth = _mask_set(masks)
    for size, overlap, pad in [(128, 32, (0, 0)), (96, 30, (0, 0)), (160, 48, (0, 0)), (128, 32, (37, 11))]:
        h, w = hw[0] + pad[1], hw[1] + pad[0]
        shifted = torch.zeros((len(masks), h, w), dtype=torch.bool)
        shifted[:, pad[1]:, pad[0]:] = masks
        tiles = tile_boxes(h, w, size, overlap)
        parts = _detections(shifted, tiles, classes, scores)
        out = TiledInference(size=size, overlap=overlap).combine(parts, tiles, (h, w))
        assert sum(len(p) for p in parts) > len(masks) + 50  # many objects seen by several tiles
        assert _mask_set(out.pred_masks, shift=pad) == truth, (size, overlap, pad)


def test_candidate_pairs_are_exactly_the_overlapping_boxes():
    g = torch.Generator().manual_seed(1)
    xy = torch.rand(300, 2, generator=g) * 500
    wh = torch.rand(300, 2, generator=g) * 40 + torch.where(torch.rand(300, 1, generator=g) < 0.05, 150.0, 1.0)
    boxes = torch.cat([xy, xy + wh], 1).round()
    boxes[:5, 2:] = boxes[:5, :2]  # empty boxes pair with nothing
    inter_w = (torch.minimum(boxes[:, None, 2], boxes[None, :, 2]) - torch.maximum(boxes[:, None, 0], boxes[None, :, 0]))
    inter_h = (torch.minimum(boxes[:, None, 3], boxes[None, :, 3]) - torch.maximum(boxes[:, None, 1], boxes[None, :, 1]))
    ref = torch.nonzero(torch.triu((inter_w > 0) & (inter_h > 0), diagonal=1)).tolist()
    for cell in (0, 7, 64, 1000):
        got = candidate_pairs(boxes, cell)
        assert sorted(map(tuple, got.tolist())) == sorted(map(tuple, ref)), cell


def test_sparse_greedy_keep_equals_dense():
    g = torch.Generator().manual_seed(2)
    for _ in range(5):
        sup = torch.rand(60, 60, generator=g) < 0.05
        later, earlier = torch.nonzero(torch.tril(sup, diagonal=-1), as_tuple=True)
        keep = greedy_keep_sparse(60, later, earlier)
        ref = torch.zeros(60, dtype=torch.bool)  # the greedy definition, one item at a time
        for i in range(60):
            ref[i] = not bool((sup[i, :i] & ref[:i]).any())
        assert torch.equal(keep, ref) and torch.equal(greedy_keep(sup), ref)
