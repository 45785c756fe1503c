"""Sharing the CPU cores among the stages that run at once (``SHARE_CORES``).

With ``PARALLEL_STAGES`` > 1 on a CPU machine each stage starts on ``NUM_THREADS`` torch threads (1: two
threads on two busy cores run many times slower). Towards the end of a run one long stage (the student) often
runs alone while the other cores idle. The scheduler keeps the names of the running stages in
``<OUTPUT_DIR>/.running_stages.json``; :class:`CoreShareHook` re-reads it every ``period`` iterations of a
training stage and sets the stage's torch threads to ``cores // running`` (at least 1), so a stage left alone
takes every core and gives them back when another stage starts.
"""
import json
import logging
from typing import Sequence

import torch
from detectron2.engine import HookBase

from ..utils.part_files import atomic_output

__all__ = ["RUNNING_FILE", "write_running", "read_running", "threads_for", "CoreShareHook"]

logger = logging.getLogger(__name__)

RUNNING_FILE = ".running_stages.json"  # under OUTPUT_DIR, written by the scheduler of parallel runs


def write_running(path: str, names: Sequence[str]) -> None:
    """Record the stages running now (atomically: a reader never sees half a file)."""
    with atomic_output(path) as f:
        json.dump(sorted(names), f)


def read_running(path: str) -> int:
    """Number of stages running now; 0 when ``path`` is missing or unreadable (no scheduler)."""
    try:
        with open(path) as f:
            return len(json.load(f))
    except (OSError, ValueError):
        return 0


def threads_for(cores: int, running: int, floor: int = 1) -> int:
    """Torch threads of one of ``running`` stages on ``cores`` cores: ``cores // running``, >= ``floor``."""
    return max(floor, cores // max(1, running))


class CoreShareHook(HookBase):
    """Every ``period`` iterations: torch threads = ``threads_for(cores, running stages)``.

    Args:
        path: the scheduler's running-stages file.
        cores: cores to share (``os.cpu_count()``).
        floor: the fewest threads (the stage's NUM_THREADS).
    """

    def __init__(self, path: str, cores: int, floor: int = 1, period: int = 20):
        self.path, self.cores, self.floor, self.period = path, cores, floor, period

    def before_step(self):
        if self.trainer.iter % self.period:
            return
        running = read_running(self.path)
        if running == 0:
            return
        threads = threads_for(self.cores, running, self.floor)
        if threads != torch.get_num_threads():
            logger.info(f"{running} stage(s) running on {self.cores} cores: {torch.get_num_threads()} -> "
                        f"{threads} torch threads at iteration {self.trainer.iter}")
            torch.set_num_threads(threads)
