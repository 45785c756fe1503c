"""wssis-d2: PointWSSIS (CVPR 2023) weakly semi-supervised instance segmentation on detectron2.

Importing the package registers its meta-architectures (``WSSISSOLOv2``, ``MaskRefineNet``) in detectron2's
``META_ARCH_REGISTRY``.
"""
import warnings

# fvcore (imported by detectron2's layers) applies torch.jit.script to its focal loss at import; torch 2.x
# deprecates torch.jit.script with a FutureWarning that every command printed, though nothing of ours
# scripts anything. Hidden: that message only.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)

from .config import add_wssis_config  # noqa: E402
from . import modeling  # noqa: F401,E402  (registers WSSISSOLOv2)
from . import mrn  # noqa: F401,E402  (registers MaskRefineNet)
from .data import WSSISDatasetMapper, register_point_instances, register_wssis_shapes, register_wssis_splits  # noqa: F401,E501
from .predict import PointPredictor  # noqa: F401,E402  (click-to-mask, docs/PREDICT.md)
