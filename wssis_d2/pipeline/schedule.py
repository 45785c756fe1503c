"""Running a set of stages with several at once: each stage in a fresh spawned process, started as soon as
the stages it needs are finished, in priority order (``PARALLEL_STAGES``). It knows stages by name only:
what they do, read and write is the stage table's (``pipeline/stage_table.py``).
"""
import concurrent.futures
import logging
import multiprocessing
from typing import Callable, List, Mapping, Optional, Sequence

from .cores import write_running

__all__ = ["run_parallel"]

logger = logging.getLogger(__name__)


def run_parallel(runner, pending: Sequence[str], needs: Mapping[str, Sequence[str]], worker: Callable[[str], List[str]],
                 max_parallel: int, running_file: Optional[str] = None) -> None:
    """Run the stages ``pending`` (in priority order), up to ``max_parallel`` at once.

    Args:
        runner: the run's :class:`~.stages.StageRunner`: a stage is finished when its marker is in
            ``runner.records`` (``runner.finished`` loads it); the stages the workers ran are added to
            ``runner.ran``.
        pending: the stages to run, highest priority first.
        needs: stage -> the stages it waits for (only those of ``pending`` or already finished count).
        worker: ``worker(stage) -> [stages it ran]``, called in a spawned process: picklable (a module-level
            function or a ``functools.partial`` of one).
        max_parallel: stages at once.
        running_file: where the names of the running stages are kept (``cores.CoreShareHook``), or None.

    A failed stage stops the scheduling: the stages already running finish (and keep their markers), then
    its error is raised. A stage that waits for a stage that never runs is an error.
    """
    pending = list(pending)
    waits = {s: [n for n in needs[s] if n in pending or n in runner.records] for s in pending}
    running, failed = {}, None
    ctx = multiprocessing.get_context("spawn")
    # A fresh process per stage (max_tasks_per_child=1): no catalog or memory left over from another stage.
    with concurrent.futures.ProcessPoolExecutor(max_workers=max_parallel, mp_context=ctx,
                                                max_tasks_per_child=1) as pool:
        while pending or running:
            for stage in list(pending):
                if failed is not None or len(running) >= max_parallel:
                    break
                if any(n not in runner.records for n in waits[stage]):
                    continue
                pending.remove(stage)
                if runner.finished(stage) is not None:
                    continue
                logger.info(f"[{stage}] starting in a worker process ({len(running) + 1} of {max_parallel} "
                            f"running) -> {runner.stage_dir(stage)}")
                running[pool.submit(worker, stage)] = stage
                if running_file:
                    write_running(running_file, running.values())
            if not running:
                if failed is not None or not pending:
                    break
                raise RuntimeError(f"Stages {pending} wait for stages that do not run: "
                                   f"{ {s: waits[s] for s in pending} }")
            done, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                stage = running.pop(future)
                if running_file:
                    write_running(running_file, running.values())
                try:
                    runner.ran.extend(future.result())
                except Exception as e:  # noqa: BLE001 - re-raised once the running stages are done
                    logger.error(f"[{stage}] failed: {e!r}; waiting for the running stages")
                    failed = failed or e
                    continue
                record = runner.finished(stage, log=False)
                logger.info(f"[{stage}] done in {record['seconds']:.1f} s (worker process)")
    if failed is not None:
        raise failed
