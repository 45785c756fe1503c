"""detectron2's ``launch`` on machines without CUDA (GLOO processes), and the DDP model for CPU.

detectron2 0.6's ``launch`` asserts CUDA in every spawned process and initialises the NCCL backend, so
``--num-gpus N`` cannot start on a CPU-only machine. Current detectron2 (main, PR #4720 "Support launch()
on CPU machines") picks the GLOO backend when CUDA is absent. :func:`launch` mirrors that change: with
CUDA present (or one process) it *is* detectron2's ``launch``, unchanged, so a ``--num-gpus`` larger than
the GPUs present stays detectron2's error; without CUDA it starts the same processes with GLOO.
Drop :func:`launch` (use ``detectron2.engine.launch``) once the pinned detectron2 includes PR #4720.

:func:`create_ddp_model` is detectron2's ``create_ddp_model`` for a model whose parameters are on the
CPU: torch's ``DistributedDataParallel`` refuses ``device_ids`` for CPU modules, and detectron2 (0.6 and
main) passes ``device_ids=[local rank]``; here it gets ``device_ids=None``. CUDA models: detectron2's.
"""
import logging
import os
import socket
import sys
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from detectron2.engine import create_ddp_model as d2_create_ddp_model
from detectron2.engine import launch as d2_launch
from detectron2.utils import comm

__all__ = ["launch", "create_ddp_model", "DEFAULT_TIMEOUT"]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = timedelta(minutes=30)  # detectron2 0.6's launch default


def _free_local_port() -> int:
    """A TCP port free on the loopback interface now (it may be taken again before it is bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(main_func, num_gpus_per_machine, num_machines=1, machine_rank=0, dist_url=None, args=(),
           timeout=DEFAULT_TIMEOUT):
    """Run ``main_func(*args)`` in ``num_gpus_per_machine`` processes per machine (detectron2's ``launch``
    arguments). With CUDA available, or a world of one process: detectron2's ``launch``. Otherwise the
    processes are CPU processes joined by the GLOO backend (``dist_url="auto"``: a free loopback port)."""
    world_size = num_machines * num_gpus_per_machine
    if torch.cuda.is_available() or world_size <= 1:
        return d2_launch(main_func, num_gpus_per_machine, num_machines=num_machines, machine_rank=machine_rank,
                         dist_url=dist_url, args=args, timeout=timeout)
    if dist_url == "auto":
        assert num_machines == 1, "dist_url=auto not supported in multi-machine jobs."
        dist_url = f"tcp://127.0.0.1:{_free_local_port()}"
    if num_machines > 1 and dist_url.startswith("file://"):
        logger.warning("file:// is not a reliable init_method in multi-machine jobs. Prefer tcp://")
    logger.info(f"No CUDA: {world_size} CPU processes ({num_gpus_per_machine} on this machine), GLOO backend, "
                f"{dist_url}")
    mp.spawn(_cpu_worker, nprocs=num_gpus_per_machine,
             args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, args, timeout),
             daemon=False)


def _cpu_worker(local_rank, main_func, world_size, num_per_machine, machine_rank, dist_url, args, timeout):
    """One spawned CPU process: detectron2 0.6's ``_distributed_worker`` with the GLOO backend and no
    CUDA device to select."""
    global_rank = machine_rank * num_per_machine + local_rank
    try:
        dist.init_process_group(backend="gloo", init_method=dist_url, world_size=world_size, rank=global_rank,
                                timeout=timeout)
    except Exception:
        logger.error(f"Process group URL: {dist_url}")
        raise
    # The local process group (the ranks on this machine), created as detectron2 does: every process
    # creates every machine's group, in the same order; comm.get_local_rank / get_local_size read it.
    assert comm._LOCAL_PROCESS_GROUP is None
    for i in range(world_size // num_per_machine):
        group = dist.new_group(list(range(i * num_per_machine, (i + 1) * num_per_machine)))
        if i == machine_rank:
            comm._LOCAL_PROCESS_GROUP = group
    comm.synchronize()  # as detectron2: avoids a timeout right after init_process_group
    try:
        main_func(*args)
    finally:
        # Tear the groups down before the interpreter exits: GLOO threads still alive at exit aborted a
        # rank once here ("terminate called without an active exception", SIGABRT after a finished
        # --eval-only run); current torch asks for destroy_process_group() before exit too.
        dist.destroy_process_group()
    _exit_after_success()


def _exit_after_success():
    """End a spawned rank whose ``main_func`` returned: flush Python's streams and log handlers, then
    ``os._exit(0)``, skipping the interpreter's teardown of C++ objects.

    Even with the process group destroyed, a rank still aborted at exit twice in about 80 2-process
    launches (SIGABRT, "terminate called without an active exception": a C++ thread object destroyed
    while joinable during the interpreter's teardown, after every output was written and closed), which
    turned a finished stage into a failed one. A rank whose ``main_func`` raised does not come here:
    ``mp.spawn`` reports its traceback as before.
    """
    for handler in logging.root.handlers + [h for lg in logging.Logger.manager.loggerDict.values()
                                            for h in getattr(lg, "handlers", [])]:
        try:
            handler.flush()
        except Exception:  # a handler whose stream is already closed has nothing left to write
            pass
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def create_ddp_model(model, **kwargs):
    """detectron2's ``create_ddp_model`` (``model`` itself in one process); for a model on the CPU with
    ``device_ids=None`` (module docstring). ``kwargs``: ``fp16_compression`` and DDP's arguments."""
    if comm.get_world_size() > 1 and "device_ids" not in kwargs:
        if all(p.device.type == "cpu" for p in model.parameters()):
            kwargs["device_ids"] = None
    return d2_create_ddp_model(model, **kwargs)
