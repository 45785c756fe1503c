"""SOLOv2 and PointWSSIS modeling: importing this registers the meta-architectures."""
from .solov2 import WSSISSOLOv2, HeadOutputs

__all__ = ["WSSISSOLOv2", "HeadOutputs"]
