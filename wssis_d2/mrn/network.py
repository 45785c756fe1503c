"""MaskRefineNet building blocks: ResNet encoder with an extra-channel stem, ASPP + U-Net decoder.

Shapes: N crops, S x S input (S divisible by 32, e.g. 256), ``in_channels`` = 3 (image) + K (heatmap)
+ 1 (coarse mask). Encoder outputs (strides relative to the crop):
"stem" stride 2 (before the max-pool), "res2" stride 4, "res3" 8, "res4" 16, "res5" 32.
Module names follow detectron2's ResNet ("stem.conv1", "res2.0.conv1", ...) so that ImageNet
checkpoints in detectron2 format load by detectron2's suffix matching.
"""
import math
from typing import Callable, Dict, List, Sequence, Union

import fvcore.nn.weight_init as weight_init
import torch
import torch.nn.functional as F
from torch import nn

from detectron2.layers import ASPP, Conv2d, get_norm
from detectron2.modeling.backbone.resnet import BasicBlock, BottleneckBlock, ResNet

__all__ = ["resolve_norm", "ExtraChannelStem", "MRNEncoder", "MRNDecoder"]

NormSpec = Union[str, Callable[[int], nn.Module]]


def resolve_norm(norm: str, allow_frozen: bool = False) -> NormSpec:
    """Map the MRN norm name to what :func:`detectron2.layers.get_norm` accepts.

    "GN": GroupNorm with gcd(32, channels) groups (32 for standard widths of 64 and more), halved until
    every group has at least 2 channels: on a 1 x 1 map (the ASPP image-pooling branch) a 1-channel
    group normalises a single value, which is always 0 (and GroupNorm refuses a batch of one).
    "BN", "SyncBN", "" (none): passed through to detectron2. "FrozenBN" only with ``allow_frozen``
    (the encoder, when it loads pretrained weights whose batch norm is folded into a per-channel scale
    and shift, as detectron2's MSRA caffe2 ResNets): a randomly initialised FrozenBN is a fixed affine
    map that never learns, and the decoder is always randomly initialised.
    """
    if norm == "FrozenBN" and not allow_frozen:
        raise ValueError("MODEL.MRN.NORM='FrozenBN' is not supported (random-init FrozenBN never trains); "
                         "FrozenBN is for the encoder with pretrained weights: MODEL.MRN.ENCODER_NORM")
    if norm == "GN":
        return lambda c: nn.GroupNorm(_gn_groups(c), c)
    return norm


def _gn_groups(channels: int) -> int:
    groups = math.gcd(32, channels)
    while groups > 1 and channels // groups < 2:
        groups //= 2
    return groups


def _has_norm(norm: NormSpec) -> bool:
    return not (norm is None or norm == "")


class ExtraChannelStem(nn.Module):
    """ResNet stem conv (7x7, stride 2) over 3 image channels + extra channels, then norm and ReLU.

    It is ONE convolution over the concatenated (3 + E) input channels; its weight is stored in two
    parts: ``conv1.weight`` (out, 3, 7, 7) for the image channels, under the name an ImageNet
    checkpoint uses, and ``conv1_extra.weight`` (out, E, 7, 7) for the heatmap and coarse-mask channels
    (always randomly initialised). conv(x) = conv1(x[:, :3]) + conv1_extra(x[:, 3:]).
    The 3x3 stride-2 max-pool of the ResNet stem is applied by :class:`MRNEncoder`, so that the
    stride-2 output is available as a U-Net skip.
    """

    def __init__(self, in_channels: int, out_channels: int = 64, norm: NormSpec = "GN",
                 image_channels: int = 3):
        super().__init__()
        assert in_channels > image_channels, "the stem needs extra (heatmap/mask) channels"
        self.image_channels = image_channels
        self.conv1 = Conv2d(image_channels, out_channels, kernel_size=7, stride=2, padding=3,
                            bias=False, norm=get_norm(norm, out_channels))
        self.conv1_extra = nn.Conv2d(in_channels - image_channels, out_channels, kernel_size=7,
                                     stride=2, padding=3, bias=False)
        weight_init.c2_msra_fill(self.conv1)
        weight_init.c2_msra_fill(self.conv1_extra)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, S, S) -> (N, out_channels, S/2, S/2)."""
        c = self.image_channels
        y = self.conv1._conv_forward(x[:, :c], self.conv1.weight, None) + self.conv1_extra(x[:, c:])
        if self.conv1.norm is not None:
            y = self.conv1.norm(y)
        return F.relu_(y)


_NUM_BLOCKS = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3],
               152: [3, 8, 36, 3]}


class MRNEncoder(nn.Module):
    """ResNet-{18,34,50,101,152} over (3 + K + 1)-channel crops.

    ``width`` is the stem width (64 for standard ResNets); stage widths scale with it exactly as in
    :meth:`detectron2.modeling.backbone.resnet.ResNet.make_default_stages` (which ``width=64``
    reproduces). ``norm`` may be "FrozenBN" (detectron2's ``FrozenBatchNorm2d``): with detectron2's
    ImageNet checkpoints loaded, the encoder then computes exactly detectron2's ResNet features on the
    image channels (the stem's extra channels add their own, trainable, convolution).
    """

    def __init__(self, *, in_channels: int, depth: int = 101, width: int = 64, norm: str = "GN",
                 stride_in_1x1: bool = True):
        super().__init__()
        if depth not in _NUM_BLOCKS:
            raise ValueError(f"MRN encoder depth must be one of {sorted(_NUM_BLOCKS)}, got {depth}")
        norm = resolve_norm(norm, allow_frozen=True)
        self.stem = ExtraChannelStem(in_channels, width, norm)
        if depth < 50:
            block, outs, kwargs = BasicBlock, [width, 2 * width, 4 * width, 8 * width], {}
        else:
            block = BottleneckBlock
            outs = [4 * width, 8 * width, 16 * width, 32 * width]
            kwargs = {"stride_in_1x1": stride_in_1x1}
        ins = [width] + outs[:-1]
        self.stage_names = ["res2", "res3", "res4", "res5"]
        self.out_channels = {"stem": width}
        for name, n, s, i, o in zip(self.stage_names, _NUM_BLOCKS[depth], [1, 2, 2, 2], ins, outs):
            if depth >= 50:
                kwargs["bottleneck_channels"] = o // 4
            blocks = ResNet.make_stage(block, n, in_channels=i, out_channels=o, norm=norm,
                                       stride_per_block=[s] + [1] * (n - 1), **kwargs)
            self.add_module(name, nn.Sequential(*blocks))
            self.out_channels[name] = o

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """(N, in_channels, S, S) -> {"stem": (N, w, S/2, S/2), "res2": stride 4, ..., "res5": S/32}."""
        out = {"stem": self.stem(x)}
        x = F.max_pool2d(out["stem"], kernel_size=3, stride=2, padding=1)
        for name in self.stage_names:
            x = getattr(self, name)(x)
            out[name] = x
        return out


class _UpBlock(nn.Module):
    """Upsample x2 (bilinear) to the skip's size, concatenate the skip, two 3x3 conv-norm-ReLU."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, norm: NormSpec):
        super().__init__()
        bias = not _has_norm(norm)
        self.conv1 = Conv2d(in_channels + skip_channels, out_channels, 3, padding=1, bias=bias,
                            norm=get_norm(norm, out_channels), activation=F.relu)
        self.conv2 = Conv2d(out_channels, out_channels, 3, padding=1, bias=bias,
                            norm=get_norm(norm, out_channels), activation=F.relu)
        weight_init.c2_msra_fill(self.conv1)
        weight_init.c2_msra_fill(self.conv2)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv2(self.conv1(torch.cat([x, skip], dim=1)))


class MRNDecoder(nn.Module):
    """ASPP on "res5" (stride 32), then a U-Net decoder with skips at strides 16, 8, 4, 2
    ("res4", "res3", "res2", "stem"), then a full-resolution head with ONE foreground logit.

    One sigmoid logit is equivalent to the paper's 2-class softmax output (softmax over two logits is
    the sigmoid of their difference) with half the head parameters.
    """

    SKIPS = ("res4", "res3", "res2", "stem")

    def __init__(self, *, in_channels: Dict[str, int], aspp_channels: int = 256,
                 aspp_dilations: Sequence[int] = (3, 6, 9),
                 decoder_channels: Sequence[int] = (256, 128, 64, 32), norm: str = "GN"):
        super().__init__()
        assert len(decoder_channels) == len(self.SKIPS), "one decoder width per skip (16, 8, 4, 2)"
        norm = resolve_norm(norm)
        # Image pooling is global average pooling (pool_kernel_size=None): crops have a fixed size.
        self.aspp = ASPP(in_channels["res5"], aspp_channels, list(aspp_dilations), norm=norm,
                         activation=nn.ReLU())
        blocks: List[nn.Module] = []
        prev = aspp_channels
        for skip, ch in zip(self.SKIPS, decoder_channels):
            blocks.append(_UpBlock(prev, in_channels[skip], ch, norm))
            prev = ch
        self.blocks = nn.ModuleList(blocks)
        self.head = Conv2d(prev, prev, 3, padding=1, bias=not _has_norm(norm),
                           norm=get_norm(norm, prev), activation=F.relu)
        weight_init.c2_msra_fill(self.head)
        self.predictor = nn.Conv2d(prev, 1, kernel_size=1)
        nn.init.normal_(self.predictor.weight, std=0.01)
        nn.init.constant_(self.predictor.bias, 0.0)

    def forward(self, features: Dict[str, torch.Tensor], out_hw) -> torch.Tensor:
        """features from :class:`MRNEncoder` -> (N, 1, *out_hw) foreground logits."""
        x = self.aspp(features["res5"])
        for skip, block in zip(self.SKIPS, self.blocks):
            x = block(x, features[skip])
        x = F.interpolate(x, size=tuple(out_hw), mode="bilinear", align_corners=False)
        return self.predictor(self.head(x))
