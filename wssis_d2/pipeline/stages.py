"""Stage bookkeeping: one folder per stage, a completion marker, skip on re-run, per-stage logs.

A stage is finished when ``<OUTPUT_DIR>/<stage>/done.json`` exists (written atomically, last, by the
parent process) and every file it lists under ``outputs`` still exists. A finished stage is skipped;
any other stage runs, and its own resume rules apply (training: detectron2's ``last_checkpoint``;
exports and the refinement: their outputs appear atomically, the refinement resumes from its part
files). Marker::

    {"stage": name, "status": "done", "outputs": {key: path}, "metrics": {...}, ...stage-specific keys,
     "seconds": float, "started": iso time, "load_start": [1, 5, 15 min load average], "load_end": [...],
     "finished": iso time, "num_gpus": int, "pid": the process that ran it}
"""
import contextlib
import datetime
import logging
import os
import time
from typing import Callable, Dict, Optional, Sequence

import torch

import detectron2.utils.comm as comm
from detectron2.utils.logger import setup_logger

from ..data.json_io import load_json, write_json_atomic
from ..engine.launch import launch  # detectron2's; GLOO processes without CUDA
from ..utils.part_files import atomic_output

__all__ = ["MARKER", "StageRunner", "read_marker", "jsonable", "stage_logging", "LOGGER_NAMES"]

logger = logging.getLogger(__name__)

MARKER = "done.json"
# Loggers whose records go to the console and to the run's / stage's log.txt.
LOGGER_NAMES = ("detectron2", "wssis_d2", "fvcore")
_FORMAT = logging.Formatter("[%(asctime)s] %(name)s %(levelname)s: %(message)s", datefmt="%m/%d %H:%M:%S")


def jsonable(obj):
    """``obj`` with mappings as dicts, tuples as lists, numpy/torch scalars as Python numbers and NaN /
    inf as None (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return None
    return obj


def read_marker(stage_dir: str) -> Optional[dict]:
    """The stage's marker, or None when the stage is not finished (no marker, unreadable marker, or
    an output it lists is gone)."""
    path = os.path.join(stage_dir, MARKER)
    if not os.path.isfile(path):
        return None
    try:
        record = load_json(path)
    except ValueError:
        logger.warning(f"{path} is not valid json: the stage runs again")
        return None
    missing = [p for p in (record.get("outputs") or {}).values() if isinstance(p, str) and not os.path.exists(p)]
    if missing:
        logger.warning(f"{path}: outputs {missing} are gone: the stage runs again")
        return None
    return record


@contextlib.contextmanager
def stage_logging(log_dir: Optional[str], rank: int = 0):
    """Console logging (rank 0) for ``LOGGER_NAMES`` and, while inside, a copy of their records in
    ``<log_dir>/log.txt`` (``log.txt.rank<r>`` on other ranks)."""
    for name in LOGGER_NAMES:
        setup_logger(distributed_rank=rank, name=name, abbrev_name="d2" if name == "detectron2" else name)
    if not log_dir:
        yield
        return
    os.makedirs(log_dir, exist_ok=True)
    handler = logging.FileHandler(os.path.join(log_dir, "log.txt" if rank == 0 else f"log.txt.rank{rank}"))
    handler.setFormatter(_FORMAT)
    handler.setLevel(logging.DEBUG)
    for name in LOGGER_NAMES:
        logging.getLogger(name).addHandler(handler)
    try:
        yield
    finally:
        for name in LOGGER_NAMES:
            logging.getLogger(name).removeHandler(handler)
        handler.close()


def _launched(fn: Callable, args: tuple, stage_dir: str, result_path: str, num_threads: int):
    """Body of every process of a launched stage: logging, threads, ``fn(*args)``; the main process
    writes the result for the parent."""
    if num_threads > 0:
        torch.set_num_threads(num_threads)
    # One process: the parent's stage_logging already copies the logs to the stage folder.
    with stage_logging(stage_dir if comm.get_world_size() > 1 else None, comm.get_rank()):
        result = fn(*args)
        if comm.is_main_process():
            write_json_atomic(jsonable(result or {}), result_path)
        comm.synchronize()


class StageRunner:
    """Runs the stages of one pipeline run in order, skipping finished ones.

    Args:
        output_dir: the run's root (stage folders are ``<output_dir>/<stage>``).
        num_gpus: processes per launched stage (detectron2 ``launch``, GLOO without CUDA; 1 = in this process).
        dist_url: ``launch``'s ``dist_url``.
        num_threads: torch intra-op threads in launched stages (0 = leave torch's default).
        default_config: YAML text saved as ``<stage>/config.yaml`` for a stage that saved no config of
            its own (stages without a detectron2 model config: their effective config is the pipeline's).
    """

    def __init__(self, output_dir: str, num_gpus: int = 1, dist_url: str = "auto", num_threads: int = 0,
                 default_config: Optional[str] = None):
        self.output_dir = output_dir
        self.default_config = default_config
        self.num_gpus = num_gpus
        self.dist_url = dist_url
        self.num_threads = num_threads
        self.records: Dict[str, dict] = {}  # stage -> marker, in run order
        self.ran: list = []  # stages run (not skipped) by this runner

    def stage_dir(self, name: str) -> str:
        return os.path.join(self.output_dir, name)

    def finished(self, name: str, log: bool = True) -> Optional[dict]:
        """The marker of stage ``name`` if it is finished (also kept in ``records``), else None."""
        record = read_marker(self.stage_dir(name))
        if record is not None:
            if log:
                logger.info(f"[{name}] finished earlier ({record.get('seconds', 0):.0f} s): skipped; outputs in "
                            f"{self.stage_dir(name)}")
            self.records[name] = record
        return record

    def run(self, name: str, fn: Callable, args: Sequence = (), *, launched: bool = False,
            pre: Optional[Callable[[], None]] = None, post: Optional[Callable[[dict], dict]] = None) -> dict:
        """Run stage ``name`` unless it is finished; return its marker.

        Args:
            fn: the stage body, ``fn(*args) -> {"outputs": {key: path}, "metrics": {...}, ...}``.
            launched: run ``fn`` in ``num_gpus`` processes through :func:`wssis_d2.engine.launch.launch`
                (detectron2's; GLOO processes without CUDA), ``fn`` a module-level function with picklable
                arguments; otherwise call it here.
            pre: called here before ``fn`` (e.g. preparing a training json).
            post: ``post(result) -> result``, called here after ``fn`` (e.g. a quality report).
        """
        stage_dir = self.stage_dir(name)
        record = self.finished(name)
        if record is not None:
            return record
        os.makedirs(stage_dir, exist_ok=True)
        started = datetime.datetime.now()
        load_start = [round(v, 2) for v in os.getloadavg()]
        t0 = time.perf_counter()
        logger.info(f"[{name}] starting -> {stage_dir}")
        with stage_logging(stage_dir):
            if pre is not None:
                pre()
            if launched:
                result_path = os.path.join(stage_dir, ".result.json")
                if os.path.exists(result_path):
                    os.remove(result_path)
                launch(_launched, self.num_gpus, dist_url=self.dist_url,
                       args=(fn, tuple(args), stage_dir, result_path, self.num_threads))
                if not os.path.isfile(result_path):
                    raise RuntimeError(f"Stage {name} ended without a result ({result_path})")
                result = load_json(result_path)
                os.remove(result_path)
            else:
                result = fn(*args) or {}
            if post is not None:
                result = post(result)
        config_path = os.path.join(stage_dir, "config.yaml")
        if self.default_config is not None and not os.path.isfile(config_path):
            with atomic_output(config_path) as f:
                f.write(self.default_config)
        seconds = time.perf_counter() - t0
        record = dict(
            {"stage": name, "status": "done"}, **jsonable(result), seconds=round(seconds, 2),
            started=started.isoformat(timespec="seconds"), load_start=load_start,
            load_end=[round(v, 2) for v in os.getloadavg()],
            finished=datetime.datetime.now().isoformat(timespec="seconds"), num_gpus=self.num_gpus,
            pid=os.getpid(),
        )
        record.setdefault("outputs", {})
        record.setdefault("metrics", {})
        write_json_atomic(record, os.path.join(stage_dir, MARKER))
        logger.info(f"[{name}] done in {seconds:.1f} s; outputs in {stage_dir}")
        self.records[name] = record
        self.ran.append(name)
        return record
