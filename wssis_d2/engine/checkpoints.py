"""Checkpoints at chosen iterations, beside detectron2's periodic ones."""
from typing import Iterable

import detectron2.utils.comm as comm
from detectron2.engine import HookBase

__all__ = ["SaveAtIterations", "checkpoint_name"]


def checkpoint_name(n: int, max_iter: int) -> str:
    """The file name (without ``.pth``) of the checkpoint after ``n`` iterations, as detectron2's
    ``PeriodicCheckpointer`` names it: ``model_final`` for n == max_iter, else ``model_{n - 1:07d}``."""
    return "model_final" if n == max_iter else f"model_{n - 1:07d}"


class SaveAtIterations(HookBase):
    """Save the trainer's checkpoint after each of ``iterations`` (counts 1..MAX_ITER; the one after
    MAX_ITER is ``model_final``, which detectron2 writes anyway), whatever ``SOLVER.CHECKPOINT_PERIOD`` is.

    Files and contents are those of the periodic checkpointer (``trainer.checkpointer.save``: model,
    optimizer, scheduler, iteration), so a resumed run finds them; rank 0 writes them.
    """

    def __init__(self, iterations: Iterable[int]):
        self._iterations = {int(n) for n in iterations}

    def after_step(self):
        n = self.trainer.iter + 1
        if n in self._iterations and n < self.trainer.max_iter and comm.is_main_process():
            self.trainer.checkpointer.save(checkpoint_name(n, self.trainer.max_iter), iteration=self.trainer.iter)
