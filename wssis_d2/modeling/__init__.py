"""SOLOv2 and PointWSSIS modeling: importing this registers the meta-architectures and backbones."""
from . import backbone  # noqa: F401  (registers build_mobilenetv2_fpn_backbone)
from .solov2 import WSSISSOLOv2, HeadOutputs

__all__ = ["WSSISSOLOv2", "HeadOutputs"]
