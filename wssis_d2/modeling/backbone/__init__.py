"""Backbones wssis-d2 adds to detectron2's ``BACKBONE_REGISTRY`` (importing this registers them)."""
from .mobilenet import (
    MobileNetV2Backbone,
    build_mobilenetv2_fpn_backbone,
    load_imagenet_mobilenet_v2,
    mobilenet_v2_weights_path,
)

__all__ = [
    "MobileNetV2Backbone",
    "build_mobilenetv2_fpn_backbone",
    "load_imagenet_mobilenet_v2",
    "mobilenet_v2_weights_path",
]
