"""MaskRefineNet losses (pure functions).

Shapes: N crops of S x S pixels; ``logits`` are the single foreground logit per pixel.
"""
import torch
import torch.nn.functional as F

__all__ = ["dice_loss", "mask_bce_loss"]


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Dice loss averaged over instances: 1 - (2 sum(p t) + eps) / (sum(p^2) + sum(t^2) + eps).

    Args:
        logits: (N, S, S) or (N, 1, S, S) float foreground logits; p = sigmoid(logits).
        targets: same number of elements per instance, {0, 1} (bool or float).

    Returns:
        scalar tensor (0 for N = 0, still connected to ``logits``).
    """
    n = logits.shape[0]
    if n == 0:
        return logits.sum() * 0.0
    p = logits.sigmoid().reshape(n, -1)
    t = targets.float().reshape(n, -1)
    inter = (p * t).sum(1)
    denom = (p * p).sum(1) + (t * t).sum(1)
    return (1.0 - (2.0 * inter + eps) / (denom + eps)).mean()


def mask_bce_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-pixel binary cross-entropy, averaged over all pixels of all instances.

    Args:
        logits: (N, S, S) or (N, 1, S, S) float.
        targets: same number of elements, {0, 1}.

    Returns:
        scalar tensor (0 for N = 0).
    """
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits.reshape(-1), targets.float().reshape(-1))
