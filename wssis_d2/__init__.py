"""wssis-d2: PointWSSIS (CVPR 2023) weakly semi-supervised instance segmentation on detectron2.

Importing the package registers its meta-architectures in detectron2's ``META_ARCH_REGISTRY``.
"""
from .config import add_wssis_config
from . import modeling  # noqa: F401  (registers WSSISSOLOv2)
from .data import WSSISDatasetMapper, register_point_instances, register_wssis_shapes, register_wssis_splits  # noqa: F401,E501
from .predict import PointPredictor  # noqa: F401,E402  (click-to-mask, docs/PREDICT.md)
