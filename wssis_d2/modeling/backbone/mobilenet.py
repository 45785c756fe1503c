"""ImageNet MobileNetV2 (torchvision) as a detectron2 backbone, and its FPN for SOLOv2.

torchvision's ``mobilenet_v2().features`` is cut into detectron2-style stages (strides relative to the
input, channels of torchvision's width-1.0 network):

====== ======================= ====== ========
name   torchvision layers      stride channels
====== ======================= ====== ========
stem   features[0:2]           2      16
res2   features[2:4]           4      24
res3   features[4:7]           8      32
res4   features[7:14]          16     96
res5   features[14:18]         32     320
====== ======================= ====== ========

(``features[18]``, the 1 x 1 conv to 1280 channels of the classifier, is not used.) Input: RGB,
normalised with torchvision's ImageNet mean/std in 0-255 units (MODEL.PIXEL_MEAN
[123.675, 116.28, 103.53], MODEL.PIXEL_STD [58.395, 57.12, 57.375], INPUT.FORMAT "RGB").

Weights load only through torchvision's weights API (``MobileNet_V2_Weights.IMAGENET1K_V1``, file
``mobilenet_v2-b0353104.pth`` in ``torch.hub.get_dir()/checkpoints``, hash-checked by torchvision).
``scripts/install_mobilenet_weights.sh`` (run by ``make install``) puts that file there offline; when it
is missing, :func:`load_imagenet_mobilenet_v2` raises one error naming that command instead of letting
torchvision try the network.
"""
import os
from typing import Dict, List

import torch
from torch import nn
from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

from detectron2.layers import FrozenBatchNorm2d, ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool

__all__ = [
    "STAGE_LAYERS",
    "mobilenet_v2_weights_path",
    "load_imagenet_mobilenet_v2",
    "mobilenet_v2_stages",
    "MobileNetV2Backbone",
    "build_mobilenetv2_fpn_backbone",
]

WEIGHTS = MobileNet_V2_Weights.IMAGENET1K_V1
INSTALL_COMMAND = "make install  (or: PYTHON=.venv/bin/python scripts/install_mobilenet_weights.sh)"

# name -> (first, last + 1) index into torchvision's mobilenet_v2().features; stride; channels.
STAGE_LAYERS = {"stem": (0, 2), "res2": (2, 4), "res3": (4, 7), "res4": (7, 14), "res5": (14, 18)}
STAGE_STRIDES = {"stem": 2, "res2": 4, "res3": 8, "res4": 16, "res5": 32}
STAGE_CHANNELS = {"stem": 16, "res2": 24, "res3": 32, "res4": 96, "res5": 320}
STAGE_NAMES = tuple(STAGE_LAYERS)


def mobilenet_v2_weights_path() -> str:
    """Where torchvision's weights API looks for the ImageNet MobileNetV2 file (it may not exist)."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(WEIGHTS.url))


def load_imagenet_mobilenet_v2(pretrained: bool = True) -> nn.Module:
    """torchvision ``mobilenet_v2``: ImageNet weights (``IMAGENET1K_V1``) or random init.

    Raises:
        FileNotFoundError: ``pretrained`` and the weights file is not in torch.hub's cache; the message
            names the install command.
    """
    if not pretrained:
        return mobilenet_v2(weights=None)
    path = mobilenet_v2_weights_path()
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"ImageNet MobileNetV2 weights not found at {path} (torchvision's cache, torch.hub.get_dir()). "
            f"Install them offline with: {INSTALL_COMMAND}; or set MODEL.MOBILENET.PRETRAINED False "
            "for random initialisation.")
    model = mobilenet_v2(weights=None)
    # torchvision's API: load_state_dict_from_url finds the cached file and checks its hash prefix.
    model.load_state_dict(WEIGHTS.get_state_dict(progress=False, check_hash=True))
    return model


def mobilenet_v2_stages(pretrained: bool = True, norm: str = "FrozenBN") -> Dict[str, nn.Sequential]:
    """torchvision MobileNetV2 ``features`` cut into the stages of :data:`STAGE_LAYERS`.

    Args:
        pretrained: load ImageNet weights (see :func:`load_imagenet_mobilenet_v2`).
        norm: "FrozenBN" (every BatchNorm2d replaced by detectron2's FrozenBatchNorm2d holding the
            same statistics and affine parameters) or "BN" (torchvision's trainable BatchNorm2d).
    """
    if norm not in ("FrozenBN", "BN"):
        raise ValueError(f"MODEL.MOBILENET.NORM must be 'FrozenBN' or 'BN', got {norm!r}")
    features = load_imagenet_mobilenet_v2(pretrained).features
    if norm == "FrozenBN":
        features = FrozenBatchNorm2d.convert_frozen_batchnorm(features)
    return {name: nn.Sequential(*features[a:b]) for name, (a, b) in STAGE_LAYERS.items()}


def freeze_stages(stages: Dict[str, nn.Module], freeze_at: int) -> None:
    """Stop gradients of the first ``freeze_at`` stages (0 none, 1 stem, 2 stem + res2, ... 5 all)."""
    for name in STAGE_NAMES[:freeze_at]:
        for p in stages[name].parameters():
            p.requires_grad_(False)


class MobileNetV2Backbone(Backbone):
    """Bottom-up MobileNetV2: (N, 3, H, W) normalised RGB -> {name: (N, C, H / s, W / s)} for
    ``out_features`` among "stem", "res2".."res5" (strides and channels in the module docstring).

    Stages after the last requested one are not built.
    """

    def __init__(self, *, out_features: List[str], pretrained: bool = True, norm: str = "FrozenBN",
                 freeze_at: int = 0):
        super().__init__()
        unknown = [f for f in out_features if f not in STAGE_LAYERS]
        if unknown or not out_features:
            raise ValueError(f"MobileNetV2 out_features must be among {list(STAGE_NAMES)}, got {out_features}")
        stages = mobilenet_v2_stages(pretrained, norm)
        freeze_stages(stages, freeze_at)
        last = max(STAGE_NAMES.index(f) for f in out_features)
        self.stage_names = list(STAGE_NAMES[: last + 1])
        for name in self.stage_names:
            self.add_module(name, stages[name])
        self._out_features = list(out_features)
        self._out_feature_strides = {f: STAGE_STRIDES[f] for f in out_features}
        self._out_feature_channels = {f: STAGE_CHANNELS[f] for f in out_features}

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        out = {}
        for name in self.stage_names:
            x = getattr(self, name)(x)
            if name in self._out_features:
                out[name] = x
        return out


@BACKBONE_REGISTRY.register()
def build_mobilenetv2_fpn_backbone(cfg, input_shape: ShapeSpec):
    """MobileNetV2 (MODEL.MOBILENET.*) -> detectron2's FPN (MODEL.FPN.*) with P6 by max-pooling P5,
    as ``build_resnet_fpn_backbone``: outputs "p2".."p6" at strides 4..64 for
    MODEL.FPN.IN_FEATURES ["res2", "res3", "res4", "res5"]."""
    if input_shape.channels != 3:
        raise ValueError(f"MobileNetV2 takes 3 RGB channels, got {input_shape.channels}")
    m = cfg.MODEL.MOBILENET
    bottom_up = MobileNetV2Backbone(out_features=list(cfg.MODEL.FPN.IN_FEATURES), pretrained=m.PRETRAINED,
                                    norm=m.NORM, freeze_at=m.FREEZE_AT)
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelMaxPool(),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
