"""The PointWSSIS pipeline, stage by stage (docs/PIPELINE.md):

data -> teacher -> pseudo_threshold / pseudo_fixed / pseudo_adaptive / pseudo_oracle_size -> mrn_data -> mrn ->
pseudo_adaptive_mrn -> [labels] -> student_threshold / student_points / student_points_mrn -> full_100 -> results.

With ``DATA.KIND custom`` the ``labels`` stage writes ``OUTPUT_DIR/labels.json`` (every image, one annotation
per click: ``wssis_d2.pseudo.labels``) from the final pseudo-labels (MRN-refined when MRN is planned), and
the student of those pseudo-labels trains on it without the flagged annotations. Rows that need data a
custom run does not have (``row_plan``) are skipped and logged.

Only the stages the profile's ROWS need run. Model stages go through detectron2's ``launch`` (``num_gpus``
processes; one process runs in place); data preparation, merging, MRN sample pairing and quality reports
run in the calling process.
"""
import datetime
import functools
import logging
import os
import time
from typing import List

from detectron2.data import MetadataCatalog

from ..utils.part_files import atomic_output
from ..utils.preflight import check_output_dir
from .cores import RUNNING_FILE
from .data import register_datasets
from .few_labels import few_label_summary
from .model_stages import check_stage_opts
from .results import machine_info, verdict_line, write_results
from .schedule import run_parallel
from .stage_table import STAGE, StageContext, labels_source, plan_stages, row_plan, stage_needs
from .stages import StageRunner, read_marker, stage_logging

__all__ = ["plan_stages", "row_plan", "labels_source", "run_pipeline", "run_stage", "stage_status"]

logger = logging.getLogger(__name__)


def run_pipeline(pcfg, num_gpus: int = 1, dist_url: str = "auto", config_file: str = None) -> dict:
    """Run (or resume) every stage of ``plan_stages(pcfg)`` and write results.json / results.md.

    Args:
        pcfg: a loaded pipeline config (``load_pipeline_cfg``).
        num_gpus: processes per model stage (detectron2 ``launch``).
        dist_url: ``launch``'s rendezvous url.
        config_file: recorded in the results.

    Returns:
        {"results": results.json content's paths and markdown, "records": {stage: marker}, "ran": [stages]}
    """
    t0 = time.perf_counter()
    check_output_dir(pcfg.OUTPUT_DIR, "pipeline OUTPUT_DIR")  # creatable, writable, enough free disk
    load_start = [round(v, 2) for v in os.getloadavg()]
    runner = StageRunner(pcfg.OUTPUT_DIR, num_gpus=num_gpus, dist_url=dist_url, num_threads=pcfg.NUM_THREADS,
                         default_config=pcfg.dump())
    stages = plan_stages(pcfg)
    skipped = row_plan(pcfg)[2]
    check_stage_opts(pcfg, sorted({STAGE[s].node for s in stages if STAGE[s].node}), pcfg.OUTPUT_DIR)
    with stage_logging(pcfg.OUTPUT_DIR):
        for row, reason in skipped.items():
            logger.info(f"Row {row!r} skipped: {reason}")
        cfg_path = os.path.join(pcfg.OUTPUT_DIR, "pipeline_config.yaml")
        with atomic_output(cfg_path) as f:
            f.write(pcfg.dump())
        logger.info(f"Pipeline {config_file or ''} -> {pcfg.OUTPUT_DIR}: stages {stages} "
                    f"({num_gpus} process(es) per model stage); config saved to {cfg_path}")
        if pcfg.PARALLEL_STAGES > 1 and num_gpus > 1:
            logger.warning(f"PARALLEL_STAGES {pcfg.PARALLEL_STAGES} is for one process per stage: with "
                           f"--num-gpus {num_gpus} the stages run one after the other")
        run_stage(runner, pcfg, "data", stages)
        register_datasets(pcfg)  # also when "data" finished earlier
        if pcfg.PARALLEL_STAGES > 1 and num_gpus == 1 and len(stages) > 2:
            _run_parallel(runner, pcfg, stages)
        else:
            for stage in stages[1:]:
                run_stage(runner, pcfg, stage, stages)
        d = pcfg.DATASETS
        meta = {
            "config_file": os.path.abspath(config_file) if config_file else None,
            "output_dir": pcfg.OUTPUT_DIR,
            "num_gpus": num_gpus,
            "parallel_stages": pcfg.PARALLEL_STAGES,
            "machine": machine_info(),
            "load_start": load_start,
            "load_end": [round(v, 2) for v in os.getloadavg()],
            "wall_seconds": round(time.perf_counter() - t0, 2),
            "stages": stages,
            "stages_run": list(runner.ran),
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "datasets": dict(pcfg.DATASETS),
            "skipped_rows": skipped,
            "thing_classes": list(MetadataCatalog.get(d.FULL).get("thing_classes", []) or []),
        }
        written = write_results(pcfg, runner.records, meta)
        verdict = verdict_line(written["content"].get("student_vs_teacher"), bool(written["content"].get("labels")))
        if verdict:
            logger.warning(verdict)
        missing = few_label_summary(pcfg, runner.records)
        if missing:
            logger.warning("What was missing (results.md):\n" + "\n".join(f"  - {line}" for line in missing))
        logger.info(f"Results written to {written['md']} and {written['json']} ({meta['wall_seconds']:.0f} s, "
                    f"stages run: {meta['stages_run'] or 'none'})")
    return {"results": written, "records": runner.records, "ran": list(runner.ran)}


def run_stage(runner, pcfg, name: str, stages: List[str]) -> dict:
    """Run (or skip, when finished) stage ``name`` of the table (``stage_table.STAGES``); the records of the
    stages it needs must be in ``runner.records``. Returns its marker."""
    stage = STAGE[name]
    call = stage.body(StageContext(pcfg, stage, stages, runner))
    return runner.run(name, call.fn, call.args, launched=call.launched, pre=call.pre, post=call.post)


def _stage_process(pcfg, stages: List[str], num_threads: int, stage: str) -> List[str]:
    """Body of a worker process of a parallel run: loads the markers of the finished stages and runs
    ``stage``. Returns the stages it ran (empty when it was finished)."""
    runner = StageRunner(pcfg.OUTPUT_DIR, num_gpus=1, num_threads=num_threads, default_config=pcfg.dump())
    with stage_logging(None):
        register_datasets(pcfg)
        for name in stages:
            runner.finished(name, log=False)
        run_stage(runner, pcfg, stage, stages)
    return list(runner.ran)


def _run_parallel(runner, pcfg, stages: List[str]) -> None:
    """The stages after "data" up to ``PARALLEL_STAGES`` at once in worker processes (``schedule.run_parallel``),
    each as soon as the stages it needs are finished, by ``Stage.priority``."""
    pending = sorted((s for s in stages if s != "data"), key=lambda s: STAGE[s].priority)
    run_parallel(runner, pending, {s: stage_needs(s, stages) for s in pending},
                 functools.partial(_stage_process, pcfg, stages, runner.num_threads), pcfg.PARALLEL_STAGES,
                 os.path.join(pcfg.OUTPUT_DIR, RUNNING_FILE) if pcfg.SHARE_CORES else None)


def stage_status(pcfg) -> List[tuple]:
    """(stage, "done" | "partial" | "pending", folder) for every planned stage (``--dry-run``)."""
    out = []
    for stage in plan_stages(pcfg):
        folder = os.path.join(pcfg.OUTPUT_DIR, stage)
        if read_marker(folder) is not None:
            status = "done"
        elif os.path.isdir(folder) and os.listdir(folder):
            status = "partial"
        else:
            status = "pending"
        out.append((stage, status, folder))
    return out

