"""ImageNet MobileNetV2 encoder for MaskRefineNet (MODEL.MRN.ENCODER "mobilenet_v2").

Input: N crops (N, 3 + E, S, S): normalised RGB (torchvision's ImageNet mean/std in 0-255 units, as
for :mod:`wssis_d2.modeling.backbone.mobilenet`) followed by E = K heatmap + 1 coarse-mask channels.
Output: the features :class:`wssis_d2.mrn.network.MRNDecoder` takes, strides relative to the crop:
"stem" 2 (16 channels), "res2" 4 (24), "res3" 8 (32), "res4" 16 (96), "res5" 32 (320).

The first convolution (torchvision ``features[0][0]``: 3 x 3, stride 2, 32 filters) is widened to
3 + E input channels: its RGB filters are kept as they are (``stem.conv1``) and the filters of the
extra channels (``stem.conv1_extra``) start random (MSRA fill, as the ResNet encoder's extra channels),
so with zero extra channels the encoder's output equals torchvision's network on the RGB crop.
conv(x) = conv1(x[:, :3]) + conv1_extra(x[:, 3:]). (Zero-initialised extra filters were tried: after
300 Adam iterations at lr 1e-3 they had grown too little for the coarse mask to reach the decoder, and
every refined mask of the demo was empty.)
"""
from typing import Dict

import fvcore.nn.weight_init as weight_init
import torch
import torch.nn.functional as F
from torch import nn

from ..modeling.backbone.mobilenet import (
    STAGE_CHANNELS,
    STAGE_NAMES,
    freeze_stages,
    mobilenet_v2_stages,
)

__all__ = ["MobileNetV2Stem", "MobileNetV2MRNEncoder"]


class MobileNetV2Stem(nn.Module):
    """torchvision's ``features[0:2]`` (conv-BN-ReLU6, then the first inverted residual) over 3 image
    channels + ``extra_channels`` heatmap / mask channels. (N, 3 + E, S, S) -> (N, 16, S/2, S/2)."""

    def __init__(self, stem: nn.Sequential, extra_channels: int, image_channels: int = 3):
        super().__init__()
        conv_bn_act, self.block = stem[0], stem[1]
        self.conv1, self.norm1 = conv_bn_act[0], conv_bn_act[1]
        if self.conv1.in_channels != image_channels:
            raise ValueError(f"MobileNetV2 first conv takes {self.conv1.in_channels} channels, "
                             f"expected {image_channels}")
        self.image_channels = image_channels
        c = self.conv1
        self.conv1_extra = nn.Conv2d(extra_channels, c.out_channels, c.kernel_size, c.stride, c.padding,
                                     bias=False)
        weight_init.c2_msra_fill(self.conv1_extra)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.image_channels
        y = self.conv1(x[:, :c]) + self.conv1_extra(x[:, c:])
        return self.block(F.relu6(self.norm1(y)))


class MobileNetV2MRNEncoder(nn.Module):
    """MobileNetV2 over (3 + E)-channel crops with the interface of :class:`wssis_d2.mrn.network.MRNEncoder`
    (``stem.image_channels``, ``stem.conv1_extra``, ``out_channels``, forward -> dict of 5 features).

    Args:
        in_channels: 3 + E.
        pretrained: torchvision ImageNet weights (MODEL.MOBILENET.PRETRAINED).
        norm: "FrozenBN" or "BN" (MODEL.MOBILENET.NORM).
        freeze_at: stages not trained (MODEL.MOBILENET.FREEZE_AT); ``stem.conv1_extra`` always trains.
    """

    def __init__(self, *, in_channels: int, pretrained: bool = True, norm: str = "FrozenBN",
                 freeze_at: int = 0):
        super().__init__()
        if in_channels <= 3:
            raise ValueError("the MaskRefineNet encoder needs heatmap / mask channels besides RGB")
        stages = mobilenet_v2_stages(pretrained, norm)
        freeze_stages(stages, freeze_at)
        self.stage_names = list(STAGE_NAMES)
        self.stem = MobileNetV2Stem(stages["stem"], in_channels - 3)
        for name in self.stage_names[1:]:
            self.add_module(name, stages[name])
        self.out_channels = dict(STAGE_CHANNELS)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """(N, 3 + E, S, S) -> {"stem": (N, 16, S/2, S/2), "res2": (N, 24, S/4, S/4), ..., "res5": S/32}."""
        out = {"stem": self.stem(x)}
        y = out["stem"]
        for name in self.stage_names[1:]:
            y = getattr(self, name)(y)
            out[name] = y
        return out
