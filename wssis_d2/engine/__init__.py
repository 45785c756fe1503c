"""detectron2 trainers of wssis-d2 (what ``train_net.py`` and the pipeline call): SOLOv2, MaskRefineNet
and the pseudo-label export, and :func:`trainer_class` that picks one for a config."""
from .trainers import MRNTrainer, PseudoLabelTrainer, Trainer, trainer_class

__all__ = ["MRNTrainer", "PseudoLabelTrainer", "Trainer", "trainer_class"]
