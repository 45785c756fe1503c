"""The model config of a command line that loads a trained model (``tools/predict.py``, ``python -m wssis_d2.serve``)."""
from detectron2.config import get_cfg

from ..config import add_wssis_config

__all__ = ["model_config"]


def model_config(config_file: str, weights: str, opts=()):
    """The frozen config of ``config_file`` with the ``KEY VALUE`` list ``opts`` merged and ``MODEL.WEIGHTS`` =
    ``weights``."""
    cfg = get_cfg()
    add_wssis_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    cfg.MODEL.WEIGHTS = weights
    cfg.freeze()
    return cfg
