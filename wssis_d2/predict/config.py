"""The model configs of a command that loads a trained model (``tools/predict.py``, ``python -m wssis_d2.serve``)."""
from detectron2.config import get_cfg

from ..config import add_wssis_config
from ..utils.errors import WSSISInputError

__all__ = ["model_config", "add_model_arguments", "model_configs"]


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


def add_model_arguments(parser) -> None:
    """``--config-file``, ``--weights``, ``--mrn-config``, ``--mrn-weights`` of a command that loads a trained model
    (with a trailing ``opts`` REMAINDER argument for config overrides: :func:`model_configs`)."""
    parser.add_argument("--config-file", required=True, help="the SOLOv2 config the weights were trained with")
    parser.add_argument("--weights", required=True, help="trained SOLOv2 checkpoint (teacher or student)")
    parser.add_argument("--mrn-config", default=None, help="MaskRefineNet config: refine the clicked masks")
    parser.add_argument("--mrn-weights", default=None, help="trained MaskRefineNet checkpoint")


def model_configs(args):
    """(SOLOv2 config with ``args.opts``, MaskRefineNet config or None) of :func:`add_model_arguments`' args.

    Raises:
        WSSISInputError: only one of --mrn-config and --mrn-weights.
    """
    if bool(args.mrn_config) != bool(args.mrn_weights):
        raise WSSISInputError("--mrn-config and --mrn-weights go together")
    opts = list(args.opts or [])
    opts = opts[1:] if opts and opts[0] == "--" else opts
    cfg = model_config(args.config_file, args.weights, opts)
    return cfg, model_config(args.mrn_config, args.mrn_weights) if args.mrn_config else None
