"""Matrix NMS against a direct evaluation of its formula; candidate selection; output resizing."""
import math

import pytest
import torch

from detectron2.structures import BitMasks

from wssis_d2.modeling.postprocess import (
    Candidates,
    candidates_to_instances,
    mask_area_maskness,
    mask_boxes,
    masks_to_output,
    matrix_nms,
    point_nms,
    select_candidates,
)


def _direct_matrix_nms(masks, labels, scores, kernel, sigma):
    """s_j * min_{i<j} f(iou_ij) / f(max_{k<i} iou_ki), same-class pairs only, in plain Python."""
    k = len(scores)
    flat = masks.reshape(k, -1).float()

    def iou(a, b):
        if labels[a] != labels[b]:
            return 0.0
        inter = float((flat[a] * flat[b]).sum())
        union = float(flat[a].sum() + flat[b].sum()) - inter
        return inter / union if union > 0 else 0.0

    def f(x):
        return math.exp(-sigma * x * x) if kernel == "gaussian" else 1.0 - x

    out = []
    for j in range(k):
        decay = 1.0
        for i in range(j):
            comp = max([iou(q, i) for q in range(i)], default=0.0)
            decay = min(decay, f(iou(i, j)) / f(comp))
        out.append(float(scores[j]) * decay)
    return torch.tensor(out)


@pytest.mark.parametrize("kernel", ["gaussian", "linear"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matrix_nms_matches_formula(kernel, seed):
    g = torch.Generator().manual_seed(seed)
    k = 12
    base = torch.rand(4, 16, 16, generator=g) > 0.5
    # Overlapping masks: noisy copies of 4 base masks.
    masks = base[torch.randint(0, 4, (k,), generator=g)] ^ (torch.rand(k, 16, 16, generator=g) > 0.85)
    labels = torch.randint(0, 2, (k,), generator=g)
    scores = torch.rand(k, generator=g).sort(descending=True).values
    got = matrix_nms(masks, labels, scores, kernel=kernel, sigma=2.0)
    want = _direct_matrix_nms(masks, labels, scores, kernel, 2.0)
    assert torch.allclose(got, want, atol=1e-5)
    assert got[0] == scores[0] and (got <= scores + 1e-6).all()


def test_matrix_nms_decays_duplicate_not_other_class():
    m = torch.zeros(3, 8, 8, dtype=torch.bool)
    m[:, 2:6, 2:6] = True
    out = matrix_nms(m, torch.tensor([0, 0, 1]), torch.tensor([0.9, 0.8, 0.7]), sigma=2.0)
    assert out[0] == pytest.approx(0.9)
    assert out[1] == pytest.approx(0.8 * math.exp(-2.0))  # IoU 1 with a higher-scored same-class mask
    assert out[2] == pytest.approx(0.7)  # other class: untouched


def test_mask_area_maskness_chunked():
    probs = torch.zeros(3, 4, 4)
    probs[0, :2, :2] = 0.8  # 4 pixels above 0.5, maskness 0.8
    probs[1, 0, 0] = 0.9  # 1 pixel
    logits = torch.logit(probs.clamp(1e-6, 1 - 1e-6)).reshape(3, 16)
    # identity features: kernel row i reproduces mask i
    area, maskness, soft = mask_area_maskness(logits, torch.eye(16), 0.5)
    assert area.tolist() == [4, 1, 0]
    assert maskness.tolist() == pytest.approx([0.8, 0.9, 0.0], abs=1e-5)
    assert soft.shape == (3, 16)
    area2, maskness2, soft2 = mask_area_maskness(logits, torch.eye(16), 0.5, max_chunk_pixels=16)
    assert torch.equal(area2, area) and torch.allclose(maskness2, maskness) and soft2 is None


def _loop_point_nms(probs):
    """Published rule, cell by cell: keep where the value is the max of the 2x2 window up-left of it."""
    c, s_h, s_w = probs.shape
    out = torch.zeros_like(probs)
    for k in range(c):
        for i in range(s_h):
            for j in range(s_w):
                window = [probs[k, a, b] for a in (i - 1, i) for b in (j - 1, j) if a >= 0 and b >= 0]
                if probs[k, i, j] == max(window):
                    out[k, i, j] = probs[k, i, j]
    return out


def test_point_nms_matches_published_rule():
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(3, 7, 7, generator=g)
    probs[0, 2, 2] = probs[0, 2, 3]  # a tie: both keep (equal to the window max)
    assert torch.equal(point_nms(probs), _loop_point_nms(probs))
    # two neighbouring cells of one object: only the stronger one stays a candidate
    one = torch.zeros(1, 4, 4)
    one[0, 1, 1], one[0, 1, 2] = 0.9, 0.8
    assert point_nms(one)[0].nonzero().tolist() == [[1, 1]]


def _loop_select_candidates(cate_probs, kernels, strides, feats, score_thr, mask_thr, nms_pre):
    """Published order with plain Python: threshold -> mask -> area filter -> maskness -> score ->
    top nms_pre by score. Returns [(score, cell, class)] sorted by decreasing score."""
    out = []
    for a in range(cate_probs.shape[0]):
        for c in range(cate_probs.shape[1]):
            p = float(cate_probs[a, c])
            if p <= score_thr:
                continue
            mask = torch.sigmoid(torch.einsum("e,ehw->hw", kernels[a], feats))
            fg = mask > mask_thr
            if int(fg.sum()) <= float(strides[a]):
                continue
            out.append((p * float(mask[fg].mean()), a, c))
    out.sort(key=lambda t: -t[0])
    return out[:nms_pre]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_select_candidates_published_order_on_random_heads(seed):
    g = torch.Generator().manual_seed(seed)
    num_cells, num_classes, e = 40, 3, 8
    feats = torch.randn(e, 12, 12, generator=g, dtype=torch.float64)
    kernels = torch.randn(num_cells, e, generator=g, dtype=torch.float64) * 2
    cate = torch.rand(num_cells, num_classes, generator=g, dtype=torch.float64) ** 3
    strides = torch.full((num_cells,), 8.0, dtype=torch.float64)
    args = dict(score_thr=0.1, mask_thr=0.5, nms_kernel="gaussian", nms_sigma=2.0, update_thr=0.0,
                max_per_img=1000)
    want = _loop_select_candidates(cate, kernels, strides, feats, 0.1, 0.5, nms_pre=7)
    assert len(want) == 7  # the cut is exercised
    # Matrix NMS with sigma 0 keeps every score: the candidates after the cut come out unchanged
    got = select_candidates(cate, kernels, strides, feats, nms_pre=7, **dict(args, nms_sigma=0.0))
    assert got.scores.tolist() == pytest.approx([w[0] for w in want], abs=1e-9)
    assert got.classes.tolist() == [w[2] for w in want]
    for mask, (_, cell, _) in zip(got.mask_probs, want):
        assert torch.allclose(mask, torch.sigmoid(torch.einsum("e,ehw->hw", kernels[cell], feats)))
    # and with a chunked scoring pass (masks recomputed for the kept ones) the same answer
    chunked = select_candidates(cate, kernels, strides, feats, nms_pre=7, max_chunk_pixels=144 * 3,
                                **dict(args, nms_sigma=0.0))
    assert torch.allclose(chunked.scores, got.scores) and torch.allclose(chunked.mask_probs, got.mask_probs)


def test_nms_pre_cuts_by_maskness_weighted_score():
    # Cell 0: class prob 0.9 but a weak mask (probabilities 0.55): score 0.495.
    # Cell 1: class prob 0.6 with a confident mask (~1.0): score ~0.6. With NMS_PRE 1 cell 1 must win;
    # cutting by class probability first (the old order) would keep cell 0.
    feats = torch.ones(1, 8, 8)
    kernels = torch.tensor([[math.log(0.55 / 0.45)], [20.0]])
    probs = torch.tensor([[0.9], [0.6]])
    out = select_candidates(
        probs, kernels, torch.tensor([2.0, 2.0]), feats, score_thr=0.1, mask_thr=0.5, nms_pre=1,
        nms_kernel="gaussian", nms_sigma=2.0, update_thr=0.05, max_per_img=10,
    )
    assert out.scores.tolist() == pytest.approx([0.6], abs=1e-4)


def test_select_candidates_end_to_end():
    # Two cells, each with a clear kernel picking one mask-feature channel.
    feats = torch.full((2, 8, 8), -10.0)
    feats[0, :4, :4] = 10.0
    feats[1, 4:, 4:] = 10.0
    kernels = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    probs = torch.tensor([[0.9, 0.0], [0.0, 0.6], [0.05, 0.05]])  # third cell below threshold
    out = select_candidates(
        probs, kernels, torch.tensor([2.0, 2.0, 2.0]), feats,
        score_thr=0.1, mask_thr=0.5, nms_pre=10, nms_kernel="gaussian", nms_sigma=2.0,
        update_thr=0.05, max_per_img=10,
    )
    assert out.classes.tolist() == [0, 1]
    assert out.scores[0] == pytest.approx(0.9, abs=1e-3) and out.scores[1] == pytest.approx(0.6, abs=1e-3)
    assert (out.mask_probs[0, :4, :4] > 0.99).all() and (out.mask_probs[0, 4:, 4:] < 0.01).all()
    out1 = select_candidates(
        probs, kernels, torch.tensor([2.0, 2.0, 2.0]), feats,
        score_thr=0.1, mask_thr=0.5, nms_pre=1, nms_kernel="gaussian", nms_sigma=2.0,
        update_thr=0.05, max_per_img=10,
    )
    assert out1.classes.tolist() == [0]


def test_masks_to_output_crops_padding_and_resizes():
    probs = torch.zeros(1, 8, 8)  # padded input 32 x 32, image 16 x 24 inside it
    probs[0, :4, :6] = 1.0  # covers exactly the image
    masks = masks_to_output(probs, (16, 24), (32, 48), 0.5)
    assert masks.shape == (1, 32, 48)
    assert masks[0, 2:30, 2:46].all()
    inst = candidates_to_instances(Candidates(probs, torch.tensor([0.7]), torch.tensor([2])), (16, 24), (32, 48), 0.5)
    assert inst.pred_boxes.tensor.tolist() == [[0.0, 0.0, 48.0, 32.0]]
    assert inst.pred_classes.tolist() == [2]


def test_mask_boxes_match_bitmasks():
    g = torch.Generator().manual_seed(0)
    masks = torch.zeros(5, 20, 30, dtype=torch.bool)
    masks[0, 3:9, 4:20] = True
    masks[1] = torch.rand(20, 30, generator=g) > 0.9
    masks[2, 19, 29] = True
    masks[4, 0, :] = True  # masks[3] stays empty
    assert torch.equal(mask_boxes(masks), BitMasks(masks).get_bounding_boxes().tensor)
    assert tuple(mask_boxes(masks[:0]).shape) == (0, 4)
