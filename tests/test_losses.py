"""SOLOv2 losses on known inputs."""
import pytest
import torch

from wssis_d2.modeling.losses import category_focal_loss, dice_loss


def test_dice_loss_values():
    t = torch.zeros(2, 4, 4)
    t[:, :2] = 1.0
    perfect = dice_loss(t.clone(), t)
    assert torch.allclose(perfect, torch.zeros(2), atol=1e-3)
    disjoint = dice_loss(1.0 - t, t)
    assert torch.allclose(disjoint, torch.ones(2))
    half = torch.full((1, 4, 4), 0.5)
    # 1 - 2 * (0.5 * 8) / (0.25 * 16 + 8) = 1 - 8 / 12
    assert dice_loss(half, t[:1]).item() == pytest.approx(1 - 8 / 12, abs=1e-3)


def test_dice_smooth_is_the_maskrefinenet_form():
    """MaskRefineNet's Dice: eps in numerator and denominator; an empty prediction of an empty target is 0."""
    t = torch.zeros(2, 4, 4)
    t[0, :2] = 1.0
    half = torch.full((2, 4, 4), 0.5)
    # mask 0: 1 - (2 * 4 + eps) / (4 + 8 + eps); mask 1 (empty target): 1 - eps / (4 + eps)
    expected = torch.tensor([1 - (8 + 1e-3) / (12 + 1e-3), 1 - 1e-3 / (4 + 1e-3)])
    assert torch.allclose(dice_loss(half, t, smooth=1e-3), expected)
    assert dice_loss(torch.zeros(1, 4, 4), torch.zeros(1, 4, 4), smooth=1e-3).item() == pytest.approx(0.0)
    assert dice_loss(torch.zeros(1, 4, 4), torch.zeros(1, 4, 4)).item() == pytest.approx(1.0)


def test_focal_loss_matches_formula_and_normalisation():
    logits = torch.tensor([[2.0, -1.0], [0.0, 0.5], [-3.0, 1.0]])
    labels = torch.tensor([0, 2, 1])  # 2 = background (C = 2)
    alpha, gamma = 0.25, 2.0
    target = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    p = logits.sigmoid()
    pt = torch.where(target == 1, p, 1 - p)
    at = torch.where(target == 1, torch.tensor(alpha), torch.tensor(1 - alpha))
    want = (-at * (1 - pt) ** gamma * torch.log(pt)).sum() / 3  # 2 positives + 1
    got = category_focal_loss(logits, labels, 2, alpha, gamma)
    assert got.item() == pytest.approx(want.item(), rel=1e-5)


def test_focal_loss_class_zero_is_a_real_class():
    logits = torch.full((1, 3), -5.0)
    low = category_focal_loss(logits, torch.tensor([3]), 3, 0.25, 2.0)
    high = category_focal_loss(logits, torch.tensor([0]), 3, 0.25, 2.0)
    assert high > 10 * low
