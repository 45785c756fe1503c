"""SOLOv2 heads: the instance branch (category + dynamic kernel per grid cell) and the mask-feature branch.

Shape shorthand: B images, C classes, E kernel length (= mask-feature channels), S grid size of a level,
(Hf, Wf) the mask-feature resolution (1/4 of the padded input).
"""
import math
from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from detectron2.config import configurable
from detectron2.layers import Conv2d, get_norm


def coord_features(x: torch.Tensor) -> torch.Tensor:
    """CoordConv channels for a (B, _, h, w) map: (B, 2, h, w) holding x then y, each in [-1, 1]."""
    b, _, h, w = x.shape
    ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype)
    xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx, yy])[None].expand(b, 2, h, w)


def _conv_norm_relu(in_channels: int, out_channels: int, norm: str) -> Conv2d:
    """3x3 conv (no bias when normalised) + norm + ReLU, weights N(0, 0.01) as in SOLO."""
    conv = Conv2d(
        in_channels,
        out_channels,
        kernel_size=3,
        padding=1,
        bias=not norm,
        norm=get_norm(norm, out_channels) if norm else None,
        activation=F.relu,
    )
    nn.init.normal_(conv.weight, std=0.01)
    if conv.bias is not None:
        nn.init.constant_(conv.bias, 0)
    return conv


def instance_level_features(features: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    """Resample FPN outputs P2..P6 for the instance branch: P2 halved, P6 resized to P5's size.

    This gives strides (8, 8, 16, 32, 32) for the five levels (METHOD.md section 1).
    """
    feats = list(features)
    feats[0] = F.interpolate(feats[0], scale_factor=0.5, mode="bilinear", align_corners=False)
    feats[-1] = F.interpolate(feats[-1], size=feats[-2].shape[-2:], mode="bilinear", align_corners=False)
    return feats


class SOLOv2InstanceHead(nn.Module):
    """Per grid cell: C class logits and an E-long dynamic kernel, shared over levels.

    The kernel tower sees the level's features plus 2 CoordConv channels; the category tower sees the
    features only. Both resample the level to its S x S grid first.
    """

    @configurable
    def __init__(
        self,
        *,
        in_channels: int,
        channels: int,
        num_convs: int,
        num_classes: int,
        num_kernels: int,
        num_grids: Sequence[int],
        norm: str = "GN",
        prior_prob: float = 0.01,
    ):
        """
        Args:
            in_channels: channels of the FPN features.
            channels: channels of both towers.
            num_convs: conv layers per tower.
            num_classes: C.
            num_kernels: E.
            num_grids: S per level.
            norm: "GN" or "" (detectron2 ``get_norm`` names).
            prior_prob: initial foreground probability of the classifier.
        """
        super().__init__()
        self.num_grids = list(num_grids)
        self.kernel_tower = nn.Sequential(
            *[_conv_norm_relu(in_channels + 2 if i == 0 else channels, channels, norm) for i in range(num_convs)]
        )
        self.cate_tower = nn.Sequential(
            *[_conv_norm_relu(in_channels if i == 0 else channels, channels, norm) for i in range(num_convs)]
        )
        self.kernel_pred = nn.Conv2d(channels, num_kernels, kernel_size=3, padding=1)
        self.cate_pred = nn.Conv2d(channels, num_classes, kernel_size=3, padding=1)
        for layer in (self.kernel_pred, self.cate_pred):
            nn.init.normal_(layer.weight, std=0.01)
        nn.init.constant_(self.kernel_pred.bias, 0)
        nn.init.constant_(self.cate_pred.bias, -math.log((1 - prior_prob) / prior_prob))

    @classmethod
    def from_config(cls, cfg):
        s = cfg.MODEL.SOLOV2
        return {
            "in_channels": s.INSTANCE_IN_CHANNELS,
            "channels": s.INSTANCE_CHANNELS,
            "num_convs": s.NUM_INSTANCE_CONVS,
            "num_classes": s.NUM_CLASSES,
            "num_kernels": s.NUM_KERNELS,
            "num_grids": s.NUM_GRIDS,
            "norm": s.NORM,
            "prior_prob": s.PRIOR_PROB,
        }

    def forward(self, features: Sequence[torch.Tensor]):
        """
        Args:
            features: one (B, in_channels, h_l, w_l) map per level (already resampled by
                ``instance_level_features``).

        Returns:
            cate_logits: list of (B, C, S_l, S_l); kernels: list of (B, E, S_l, S_l).
        """
        cate_logits, kernels = [], []
        for feat, num_grid in zip(features, self.num_grids):
            x = torch.cat([feat, coord_features(feat)], dim=1)
            x = F.interpolate(x, size=(num_grid, num_grid), mode="bilinear", align_corners=False)
            kernels.append(self.kernel_pred(self.kernel_tower(x)))
            cate_logits.append(self.cate_pred(self.cate_tower(x[:, :-2])))
        return cate_logits, kernels


class SOLOv2MaskHead(nn.Module):
    """Fuses P2..P5 into one (B, E, Hf, Wf) mask-feature map at 1/4 of the input resolution.

    Level i (stride 4 * 2^i) goes through i (conv, x2 upsample) stages; the coarsest level gets the
    CoordConv channels; the sum goes through a 1x1 conv to E channels.
    """

    @configurable
    def __init__(self, *, in_channels: int, channels: int, num_kernels: int, num_levels: int, norm: str = "GN"):
        """
        Args:
            in_channels: channels of the FPN features.
            channels: hidden channels.
            num_kernels: E, the output channels.
            num_levels: number of FPN levels fused (4 for P2..P5).
            norm: "GN" or "".
        """
        super().__init__()
        self.levels = nn.ModuleList()
        for i in range(num_levels):
            stages = []
            for j in range(max(i, 1)):
                cin = in_channels if j == 0 else channels
                if j == 0 and i == num_levels - 1 and i > 0:
                    cin += 2
                stages.append(_conv_norm_relu(cin, channels, norm))
                if i > 0:
                    stages.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.levels.append(nn.Sequential(*stages))
        self.out = Conv2d(
            channels,
            num_kernels,
            kernel_size=1,
            bias=not norm,
            norm=get_norm(norm, num_kernels) if norm else None,
            activation=F.relu,
        )
        nn.init.normal_(self.out.weight, std=0.01)

    @classmethod
    def from_config(cls, cfg):
        s = cfg.MODEL.SOLOV2
        return {
            "in_channels": s.MASK_IN_CHANNELS,
            "channels": s.MASK_CHANNELS,
            "num_kernels": s.NUM_KERNELS,
            "num_levels": len(s.MASK_IN_FEATURES),
            "norm": s.NORM,
        }

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """(B, in_channels, h_i, w_i) maps, finest first -> (B, E, h_0, w_0) mask features."""
        out = None
        last = len(self.levels) - 1
        for i, (feat, level) in enumerate(zip(features, self.levels)):
            if i == last and i > 0:
                feat = torch.cat([feat, coord_features(feat)], dim=1)
            y = level(feat)
            if out is None:
                out = y
            else:
                # Odd input sizes can leave the upsampled map a pixel off: align to the finest level.
                if y.shape[-2:] != out.shape[-2:]:
                    y = F.interpolate(y, size=out.shape[-2:], mode="bilinear", align_corners=False)
                out = out + y
        return self.out(out)
