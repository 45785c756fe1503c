"""Matrix NMS against a direct evaluation of its formula; candidate selection; output resizing."""
import math

import pytest
import torch

from wssis_d2.modeling.postprocess import (
    Candidates,
    candidates_to_instances,
    mask_scores,
    masks_to_output,
    matrix_nms,
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


def test_mask_scores_maskness_and_area_filter():
    probs = torch.zeros(3, 4, 4)
    probs[0, :2, :2] = 0.8  # 4 pixels above 0.5, maskness 0.8
    probs[1, 0, 0] = 0.9  # 1 pixel: area 1 <= stride 1 -> dropped
    scores, keep = mask_scores(probs, torch.tensor([0.5, 0.5, 0.5]), torch.tensor([1.0, 1.0, 1.0]), 0.5)
    assert scores.tolist() == pytest.approx([0.4, 0.45, 0.0])
    assert keep.tolist() == [True, False, False]


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
