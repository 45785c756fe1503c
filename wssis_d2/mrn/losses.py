"""MaskRefineNet losses (pure functions); the Dice loss is :func:`wssis_d2.modeling.losses.dice_loss`.

Shapes: N crops of S x S pixels; ``logits`` are the single foreground logit per pixel.
"""
import torch
import torch.nn.functional as F

__all__ = ["mask_bce_loss"]


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
