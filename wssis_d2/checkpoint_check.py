"""A checkpoint that does not fit the config is an error, not a silent partial load.

detectron2's ``DetectionCheckpointer`` loads with ``strict=False``: parameters of another shape (another
number of classes) are skipped with a log line, and a checkpoint of another model (a MaskRefineNet
checkpoint given to SOLOv2, another backbone) loads nothing or half, leaving the rest at its random
initialisation. :func:`checked` makes a checkpointer raise :class:`CheckpointMismatchError` after
loading instead, when

* any parameter has another shape than the model's (names the keys and both shapes);
* nothing of the checkpoint fits the model (names the architecture the checkpoint's key prefixes belong
  to, e.g. "a MaskRefineNet checkpoint (encoder.*, decoder.*)");
* the checkpoint is a full model of this family (it has keys outside the backbone / encoder, e.g.
  ``ins_head.*``) but parameters of the model are missing from it, or it has parameters the model lacks
  (another depth or backbone).

A backbone-only checkpoint (ImageNet weights: no head keys) may leave the heads missing, as usual.
"""
import logging
from collections import OrderedDict

from .utils.errors import WSSISInputError

__all__ = ["CheckpointMismatchError", "check_checkpoint_fit", "checked"]

logger = logging.getLogger(__name__)

# Top-level module prefixes that identify a checkpoint's model family (state-dict key "<prefix>.<...>").
ARCHITECTURES = OrderedDict([("SOLOv2", {"ins_head", "mask_head"}), ("MaskRefineNet", {"encoder", "decoder"})])
BACKBONE_PREFIXES = {"backbone", "encoder"}  # what an ImageNet initialisation covers


class CheckpointMismatchError(WSSISInputError):
    """The checkpoint does not fit the model the config builds (message: which keys, which shapes)."""


def _prefixes(keys):
    return {k.split(".", 1)[0] for k in keys}


def _examples(keys, n=3):
    keys = sorted(keys)
    return ", ".join(keys[:n]) + (f" (and {len(keys) - n} more)" if len(keys) > n else "")


def _family(prefixes):
    for name, needed in ARCHITECTURES.items():
        if needed <= prefixes:
            return name
    return None


def check_checkpoint_fit(model_keys, incompatible, path, model_name="the model"):
    """Raise :class:`CheckpointMismatchError` when a load does not fit (module docstring).

    Args:
        model_keys (iterable[str]): the model's state-dict keys.
        incompatible: fvcore's ``_IncompatibleKeys`` (missing_keys, unexpected_keys, incorrect_shapes
            [(key, checkpoint shape, model shape)]) returned by the checkpointer's ``_load_model``.
        path (str): the checkpoint file, for the message.
        model_name (str): the model's class name, for the message.
    """
    model_keys = set(model_keys)
    missing, unexpected = set(incompatible.missing_keys), set(incompatible.unexpected_keys)
    shapes = list(incompatible.incorrect_shapes)
    if shapes:
        shown = "; ".join(f"{k}: checkpoint {tuple(a)} vs model {tuple(b)}" for k, a, b in shapes[:3])
        raise CheckpointMismatchError(
            f"{path} does not fit the config: {len(shapes)} parameters of {model_name} have other shapes ({shown}"
            f"{'; ...' if len(shapes) > 3 else ''}): another number of classes (MODEL.SOLOV2.NUM_CLASSES) or "
            "other layer sizes than the run that saved it; detectron2 would skip them silently")
    loaded = model_keys - missing
    ckpt_keys = loaded | unexpected
    if ckpt_keys and not loaded:
        family = _family(_prefixes(unexpected))
        what = f"a {family} checkpoint" if family else "a checkpoint of another model"
        raise CheckpointMismatchError(
            f"{path} is {what} (keys {', '.join(p + '.*' for p in sorted(_prefixes(unexpected)))}); the config "
            f"builds {model_name} (keys {', '.join(p + '.*' for p in sorted(_prefixes(model_keys)))}): nothing "
            "would be loaded. Check MODEL.WEIGHTS and --config-file")
    full = bool(_prefixes(ckpt_keys) - BACKBONE_PREFIXES)
    if full and (missing or unexpected):
        raise CheckpointMismatchError(
            f"{path} is a checkpoint of another architecture than the config's {model_name}: "
            f"{len(missing)} parameters missing from it ({_examples(missing) or '-'}), {len(unexpected)} it has "
            f"that the model lacks ({_examples(unexpected) or '-'}); another backbone or depth?")


def checked(checkpointer):
    """Make ``checkpointer`` (a detectron2 / fvcore ``Checkpointer``) raise :class:`CheckpointMismatchError`
    when what it loads does not fit its model (:func:`check_checkpoint_fit`). Returns the checkpointer.

    The check runs after every ``load`` / ``resume_or_load`` (also a resume from ``last_checkpoint``). With
    nothing to load, fvcore's "No checkpoint found. Initializing model from scratch" is replaced by a line that
    says what the model starts from: a backbone that loads its ImageNet weights itself has them."""
    load, load_file, load_model = checkpointer.load, checkpointer._load_file, checkpointer._load_model
    source = {"path": "<checkpoint>"}

    def _load(path, *args, **kwargs):
        if path:
            return load(path, *args, **kwargs)
        model = getattr(checkpointer.model, "module", checkpointer.model)  # DDP-wrapped or not
        logger.info(f"No checkpoint to load (MODEL.WEIGHTS empty, nothing to resume): the {type(model).__name__} keeps the weights it was built with (ImageNet weights "
                    "where its backbone loads them itself, e.g. MODEL.MOBILENET.PRETRAINED; random elsewhere)")
        return {}  # what fvcore's load returns for an empty path

    def _load_file(f):
        source["path"] = f
        return load_file(f)

    def _load_model(checkpoint):
        incompatible = load_model(checkpoint)
        if incompatible is not None:
            check_checkpoint_fit(checkpointer.model.state_dict().keys(), incompatible, source["path"],
                                 type(checkpointer.model).__name__)
        return incompatible

    checkpointer.load, checkpointer._load_file, checkpointer._load_model = _load, _load_file, _load_model
    return checkpointer
