"""Loss normalisation over all training processes (DDP).

DDP averages the gradients of the W processes. A loss that each process divides by its OWN count
(positive cells, masks) is then not the loss one process computes on the whole batch: a process with few
positives weighs as much as one with many. Dividing each process's loss *sum* by ``total count / W`` instead
(the total over all processes, :func:`sum_over_processes`) makes DDP's average the gradient of
``sum over all processes / total count``: the one-process loss of the whole batch. Detectors of the
detectron2 family (FCOS) normalise the same way.
"""
import torch
import torch.distributed as dist

from detectron2.utils import comm

__all__ = ["sum_over_processes"]


def sum_over_processes(x: torch.Tensor) -> torch.Tensor:
    """The sum of ``x`` over all processes (a detached copy; all-reduced on the process group's device,
    the model's: CPU for GLOO, CUDA for NCCL). One process: ``x`` detached, no communication.

    Every process must call it, once per call site and in the same order (a collective).
    """
    x = x.detach()
    if comm.get_world_size() == 1:
        return x
    x = x.clone()
    dist.all_reduce(x)
    return x
