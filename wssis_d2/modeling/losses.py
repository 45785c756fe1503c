"""SOLOv2 losses (pure functions)."""
from typing import Optional

import torch
from fvcore.nn import sigmoid_focal_loss


def dice_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3, smooth: float = 0.0) -> torch.Tensor:
    """Per-mask Dice loss, ``1 - (2 * sum(p * t) + smooth) / (sum(p^2) + sum(t^2) + eps)``; with the
    default ``smooth`` 0 the SOLO form (MaskRefineNet uses ``smooth = eps``). The one Dice loss of wssis-d2.

    Args:
        pred: (P, ...) probabilities in [0, 1].
        target: (P, ...) targets in [0, 1], same number of elements per mask.
        eps: added to both sums of squares (keeps empty pairs finite).
        smooth: added to the numerator.

    Returns:
        (P,) loss of each mask.
    """
    p = pred.flatten(1)
    t = target.flatten(1).to(p.dtype)
    inter = (p * t).sum(dim=1)
    denom = (p * p).sum(dim=1) + (t * t).sum(dim=1) + eps
    return 1.0 - (2.0 * inter + smooth) / denom


def category_focal_loss(
    logits: torch.Tensor, labels: torch.Tensor, num_classes: int, alpha: float, gamma: float,
    normaliser: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Sigmoid focal loss of the category branch, summed and divided by ``normaliser``: by default the
    number of positive cells + 1 (one process; several: ``WSSISSOLOv2.losses`` passes the global count).

    Args:
        logits: (K, C) logits of K grid cells (all levels and images stacked).
        labels: (K,) long, class index per cell; ``num_classes`` is background.
        num_classes: C.
        alpha, gamma: focal loss parameters.
        normaliser: scalar divisor; None: ``(labels < num_classes).sum() + 1``.

    Returns:
        Scalar loss.
    """
    pos = labels < num_classes
    one_hot = torch.zeros_like(logits)
    one_hot[pos.nonzero(as_tuple=True)[0], labels[pos]] = 1.0
    loss = sigmoid_focal_loss(logits, one_hot, alpha=alpha, gamma=gamma, reduction="sum")
    if normaliser is None:
        normaliser = pos.sum() + 1
    return loss / normaliser.to(loss.dtype)
