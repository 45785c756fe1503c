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
import concurrent.futures
import datetime
import logging
import multiprocessing
import os
import time
from typing import Dict, List, Tuple

from detectron2.data import MetadataCatalog

from ..data.json_io import load_json, write_json_atomic
from ..evaluation.quality import pseudo_label_quality
from ..mrn.samples import make_mrn_sample_jsons
from ..pseudo.labels import build_labels, training_labels
from ..pseudo.merge import merge_pseudo_label_files
from ..utils.part_files import atomic_output
from ..utils.preflight import check_output_dir
from .data import dataset_json, prepare_data, register_datasets
from .cores import RUNNING_FILE, write_running
from .model_stages import checkpoint_file, checkpoint_iterations, export_stage, refine_stage, train_stage
from .results import machine_info, write_results
from .scale import auto_opts
from .stages import StageRunner, read_marker, stage_logging

__all__ = ["plan_stages", "row_plan", "labels_source", "run_pipeline", "run_stage", "stage_status", "STAGE_NEEDS",
           "STUDENT_PSEUDO"]

logger = logging.getLogger(__name__)

# Student stage -> the pseudo-label stage it trains on (with DATASETS.FULL).
STUDENT_PSEUDO = {"student_threshold": "pseudo_threshold", "student_points": "pseudo_adaptive",
                  "student_points_mrn": "pseudo_adaptive_mrn"}
MRN_TRAIN, MRN_VAL = "wssis_pipeline_mrn_train", "wssis_pipeline_mrn_val"
# Stage -> the stages whose outputs it reads (when they are planned).
STAGE_NEEDS = {
    "data": (),
    "teacher": ("data",),
    "pseudo_threshold": ("teacher",),
    "pseudo_fixed": ("teacher",),
    "pseudo_adaptive": ("teacher",),
    "pseudo_oracle_size": ("teacher",),
    "mrn_data": ("teacher",),
    "mrn": ("mrn_data",),
    "pseudo_adaptive_mrn": ("pseudo_adaptive", "mrn"),
    "labels": ("data", "pseudo_adaptive", "pseudo_adaptive_mrn"),
    "student_threshold": ("data", "pseudo_threshold"),
    "student_points": ("data", "pseudo_adaptive"),
    "student_points_mrn": ("data", "pseudo_adaptive_mrn"),
    "full_100": ("data",),
}
# Start order among ready stages with PARALLEL_STAGES > 1: the longest chain (teacher -> adaptive labels
# -> MRN -> student) first, the 100% model beside the teacher, the quality-only exports last.
STAGE_PRIORITY = ("data", "teacher", "full_100", "pseudo_adaptive", "mrn_data", "mrn", "pseudo_adaptive_mrn",
                  "labels", "student_points_mrn", "pseudo_threshold", "student_threshold", "student_points",
                  "pseudo_oracle_size", "pseudo_fixed")


LABELS_FILE = "labels.json"


def row_plan(pcfg) -> Tuple[List[str], List[str], Dict[str, str]]:
    """(pseudo-label rows, model rows, {skipped row: reason}) of the profile. Only a custom run skips rows:
    pseudo-label quality needs DATA.CUSTOM.POINTS_GT_JSON (the adaptive rows' stages still run: they make
    labels.json), the 100% model needs DATA.CUSTOM.TRAIN_ALL_JSON, model AP needs VAL_JSON (the
    models still train, their rows stay empty)."""
    pseudo, models = list(pcfg.ROWS.PSEUDO_LABELS), list(pcfg.ROWS.MODELS)
    skipped = {}
    if pcfg.DATA.KIND != "custom":
        return pseudo, models, skipped
    if not pcfg.DATASETS.POINTS_GT:
        for row in pseudo:
            skipped[row] = "no DATA.CUSTOM.POINTS_GT_JSON (true masks of clicked images) to score pseudo-labels"
        pseudo = [r for r in pseudo if r in ("adaptive", "adaptive_mrn")]  # still made, for labels.json
    if "full_100" in models and not pcfg.DATASETS.TRAIN_ALL:
        skipped["full_100"] = "no DATA.CUSTOM.TRAIN_ALL_JSON (true masks of every training image) to train a 100% model"
        models.remove("full_100")
    if not pcfg.DATASETS.TEST:
        for row in models:
            skipped.setdefault(row, "no DATA.CUSTOM.VAL_JSON: trained, not evaluated")
    return pseudo, models, skipped


def labels_source(stages: List[str]) -> str:
    """The pseudo-label stage labels.json is made from: refined ones when MRN is planned."""
    return "pseudo_adaptive_mrn" if "pseudo_adaptive_mrn" in stages else "pseudo_adaptive"


def _needs(pcfg, stage: str, stages: List[str]) -> Tuple[str, ...]:
    """STAGE_NEEDS, plus labels for the student that trains on labels.json (custom runs)."""
    needs = STAGE_NEEDS[stage]
    if "labels" in stages and STUDENT_PSEUDO.get(stage) == labels_source(stages):
        needs = needs + ("labels",)
    return needs


def plan_stages(pcfg) -> List[str]:
    """Names of the stages the profile's ROWS need (``row_plan``), in run order."""
    pseudo_rows, model_rows, _ = row_plan(pcfg)
    pseudo, models = set(pseudo_rows), set(model_rows)
    custom = pcfg.DATA.KIND == "custom"
    need_mrn = "adaptive_mrn" in pseudo or "student_points_mrn" in models
    need = {
        "teacher": bool(pseudo) or bool(models - {"full_100"}),
        "pseudo_threshold": "threshold" in pseudo or "student_threshold" in models,
        "pseudo_fixed": "fixed_best" in pseudo,
        "pseudo_adaptive": bool({"adaptive", "adaptive_mrn"} & pseudo)
        or bool({"student_points", "student_points_mrn"} & models) or custom,
        "pseudo_oracle_size": "oracle_size" in pseudo,
        "mrn_data": need_mrn,
        "mrn": need_mrn,
        "pseudo_adaptive_mrn": need_mrn,
        "labels": custom,
    }
    need["teacher"] = need["teacher"] or custom
    stages = ["data"] + [name for name, needed in need.items() if needed]
    return stages + [m for m in ("student_threshold", "student_points", "student_points_mrn", "full_100")
                     if m in models]


def _report_post(pcfg, names):
    """post() of an export stage: quality report of each named pseudo-label json vs POINTS_GT."""
    def post(result):
        if not pcfg.DATASETS.POINTS_GT:
            logger.info(f"Quality of {names} not measured: no true masks of the point images (POINTS_GT)")
            return result
        gt = dataset_json(pcfg.DATASETS.POINTS_GT)
        reports = {}
        for name in names:
            path = result["outputs"][name]
            reports[name] = pseudo_label_quality(path, gt)
            write_json_atomic(reports[name], os.path.splitext(path)[0] + "_report.json")
            logger.info(f"{name}: AP {reports[name]['AP']}, mean IoU {reports[name]['mean_iou']}, coverage "
                        f"{reports[name]['coverage']} ({path} vs {gt})")
        result["metrics"]["reports"] = reports
        return result
    return post


def _export(runner, pcfg, stage, jobs):
    """An export stage over the POINTS set with the final teacher, then its quality reports."""
    weights = os.path.join(runner.stage_dir("teacher"), "model_final.pth")
    d = runner.stage_dir(stage)
    for job in jobs:
        job.setdefault("dataset", pcfg.DATASETS.POINTS)
        job.setdefault("weights", weights)
        job.setdefault("output", os.path.join(d, f"{job['name']}.json" if len(jobs) > 1 else "pseudo_labels.json"))
    spec = {"jobs": jobs, "classes_from": pcfg.DATASETS.FULL, "auto_opts": auto_opts(pcfg, runner.records, "TEACHER")}
    return runner.run(stage, export_stage, (pcfg, d, spec), launched=True,
                      post=_report_post(pcfg, [j["name"] for j in jobs]))


def _mrn_data(runner, pcfg):
    """Teacher predictions on the FULL images from the chosen checkpoints, paired with their GT."""
    teacher = runner.records["teacher"]
    d = runner.stage_dir("mrn_data")
    max_iter = teacher["max_iter"]
    jobs = []
    for n in checkpoint_iterations(max_iter, pcfg.MRN.TEACHER_CHECKPOINTS):
        weights = checkpoint_file(runner.stage_dir("teacher"), n, max_iter)
        if not os.path.isfile(weights):
            raise FileNotFoundError(f"Teacher checkpoint {weights} (after {n} of {max_iter} iterations) is missing")
        jobs.append({"name": f"iter_{n}", "dataset": pcfg.DATASETS.FULL, "mode": pcfg.MRN.DATA_MODE,
                     "weights": weights, "output": os.path.join(d, f"iter_{n}.json")})
    spec = {"jobs": jobs, "classes_from": pcfg.DATASETS.FULL, "auto_opts": auto_opts(pcfg, runner.records, "TEACHER")}

    def post(result):
        out = make_mrn_sample_jsons([j["output"] for j in jobs], dataset_json(pcfg.DATASETS.FULL),
                                    val_fraction=pcfg.MRN.VAL_FRACTION, seed=1)
        for split, data in out.items():
            if data["images"]:
                result["outputs"][f"mrn_{split}"] = write_json_atomic(data, os.path.join(d, f"mrn_{split}.json"))
        info = out["train"]["info"]
        result["metrics"]["samples"] = {"pairing": info["pairing"], "train": info["num_samples"],
                                        "val": out["val"]["info"]["num_samples"],
                                        "mean_coarse_iou_train": info["mean_coarse_iou"]}
        return result
    return runner.run("mrn_data", export_stage, (pcfg, d, spec), launched=True, post=post)


def _labels(runner, pcfg, stages):
    """labels.json from FULL, the clicks and the final pseudo-labels; its quality when POINTS_GT is given."""
    source = labels_source(stages)
    pseudo_json = next(iter(runner.records[source]["outputs"].values()))

    def body():
        full_json, points_json = dataset_json(pcfg.DATASETS.FULL), dataset_json(pcfg.DATASETS.POINTS)
        labels = build_labels(load_json(full_json), load_json(points_json), load_json(pseudo_json),
                              fallback_radius=pcfg.LABELS.FALLBACK_RADIUS, names=(full_json, points_json, pseudo_json),
                              image_root=pcfg.DATA.CUSTOM.IMAGE_ROOT)
        labels["info"]["pseudo_stage"] = source
        path = write_json_atomic(labels, os.path.join(pcfg.OUTPUT_DIR, LABELS_FILE))
        metrics = {k: v for k, v in labels["info"].items() if k.startswith("num_")}
        logger.info(f"{path}: {metrics['num_images']} images, {metrics['num_full_annotations']} true masks, "
                    f"{metrics['num_clicks']} clicks ({metrics['num_pseudo_labels']} pseudo-labels from {source}, "
                    f"{metrics['num_fallback']} fallbacks)")
        if pcfg.DATASETS.POINTS_GT:
            gt = dataset_json(pcfg.DATASETS.POINTS_GT)
            metrics["report"] = pseudo_label_quality(path, gt)
            logger.info(f"labels.json on the clicked images vs {gt}: AP {metrics['report']['AP']}, mean IoU "
                        f"{metrics['report']['mean_iou']}")
        return {"outputs": {"labels": path}, "metrics": metrics, "pseudo_stage": source}
    return runner.run("labels", body)


def _student(runner, pcfg, stage, stages):
    d = runner.stage_dir(stage)
    train_json = os.path.join(d, "train.json")
    pseudo_json = next(iter(runner.records[STUDENT_PSEUDO[stage]]["outputs"].values()))
    full_json = dataset_json(pcfg.DATASETS.FULL)
    on_labels = "labels" in _needs(pcfg, stage, stages)

    def pre():
        if on_labels and not os.path.isfile(train_json):
            labels_json = runner.records["labels"]["outputs"]["labels"]
            kept, removed = training_labels(load_json(labels_json))
            write_json_atomic(kept, train_json)
            logger.info(f"{train_json}: {labels_json} without its {removed} flagged annotations (fallback masks "
                        f"of clicks without a pseudo-label): {len(kept['annotations'])} annotations")
        elif not os.path.isfile(train_json):
            info = merge_pseudo_label_files(full_json, pseudo_json, train_json)
            logger.info(f"{train_json}: {info['num_images']} images, {info['num_annotations']} annotations "
                        f"({full_json} + {pseudo_json})")
    name = f"wssis_pipeline_{stage}_train"
    spec = {"node": "STUDENT", "train": [name], "test": _test(pcfg), "classes_from": pcfg.DATASETS.FULL,
            "register": [(name, train_json, "train")], "forced": ["INPUT.MASK_FORMAT", "bitmask"],
            "auto_opts": auto_opts(pcfg, runner.records, "STUDENT")}
    return runner.run(stage, train_stage, (pcfg, d, spec), launched=True, pre=pre)


def _test(pcfg) -> List[str]:
    return [pcfg.DATASETS.TEST] if pcfg.DATASETS.TEST else []


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
        if pcfg.PARALLEL_STAGES > 1 and num_gpus == 1 and len(stages) > 2:
            _run_parallel(runner, pcfg, stages)
        else:
            for stage in stages:
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
        logger.info(f"Results written to {written['md']} and {written['json']} ({meta['wall_seconds']:.0f} s, "
                    f"stages run: {meta['stages_run'] or 'none'})")
    return {"results": written, "records": runner.records, "ran": list(runner.ran)}


def run_stage(runner, pcfg, stage: str, stages: List[str]) -> dict:
    """Run (or skip, when finished) one stage; the records of the stages it needs must be in
    ``runner.records``. Returns its marker."""
    d = pcfg.DATASETS
    if stage == "data":
        runner.run("data", prepare_data, (pcfg,))
        register_datasets(pcfg)  # also when the stage was skipped
    elif stage == "teacher":
        spec = {"node": "TEACHER", "train": [d.FULL], "test": _test(pcfg), "classes_from": d.FULL,
                "forced": ["INPUT.MASK_FORMAT", "bitmask"], "auto_opts": auto_opts(pcfg, runner.records, "TEACHER")}
        if "mrn_data" in stages:
            spec["checkpoint_fractions"] = list(pcfg.MRN.TEACHER_CHECKPOINTS)
        runner.run("teacher", train_stage, (pcfg, runner.stage_dir("teacher"), spec), launched=True)
    elif stage == "pseudo_threshold":
        _export(runner, pcfg, stage, [{"name": "threshold", "mode": "threshold",
                                       "opts": ["MODEL.WSSIS.THRESHOLD", pcfg.PSEUDO.THRESHOLD]}])
    elif stage == "pseudo_fixed":
        _export(runner, pcfg, stage, [{"name": f"fixed_{lv}", "mode": "fixed",
                                       "opts": ["MODEL.WSSIS.FIXED_LEVEL", int(lv)]}
                                      for lv in pcfg.PSEUDO.FIXED_LEVELS])
    elif stage in ("pseudo_adaptive", "pseudo_oracle_size"):
        mode = stage.split("_", 1)[1]
        _export(runner, pcfg, stage, [{"name": mode, "mode": mode}])
    elif stage == "mrn_data":
        _mrn_data(runner, pcfg)
    elif stage == "mrn":
        outputs = runner.records["mrn_data"]["outputs"]
        register = [(MRN_TRAIN, outputs["mrn_train"], "mrn")]
        test = []
        if "mrn_val" in outputs:
            register.append((MRN_VAL, outputs["mrn_val"], "mrn"))
            test = [MRN_VAL]
        spec = {"node": "MRN", "train": [MRN_TRAIN], "test": test, "classes_from": d.FULL,
                "register": register}
        runner.run("mrn", train_stage, (pcfg, runner.stage_dir("mrn"), spec), launched=True)
    elif stage == "pseudo_adaptive_mrn":
        sd = runner.stage_dir(stage)
        spec = {"pseudo": runner.records["pseudo_adaptive"]["outputs"]["adaptive"],
                "output": os.path.join(sd, "pseudo_labels.json"),
                "weights": runner.records["mrn"]["outputs"]["weights"], "classes_from": d.FULL}
        runner.run(stage, refine_stage, (pcfg, sd, spec), launched=True,
                   post=_rename_post(_report_post(pcfg, ["adaptive_mrn"]), "pseudo_labels", "adaptive_mrn"))
    elif stage == "labels":
        _labels(runner, pcfg, stages)
    elif stage in STUDENT_PSEUDO:
        _student(runner, pcfg, stage, stages)
    elif stage == "full_100":
        spec = {"node": "FULL_100", "train": [d.TRAIN_ALL], "test": _test(pcfg), "classes_from": d.FULL,
                "forced": ["INPUT.MASK_FORMAT", "bitmask"], "auto_opts": auto_opts(pcfg, runner.records, "FULL_100")}
        runner.run("full_100", train_stage, (pcfg, runner.stage_dir("full_100"), spec), launched=True)
    return runner.records[stage]


def _stage_process(pcfg, stage: str, stages: List[str], num_threads: int) -> List[str]:
    """Body of a worker process of ``_run_parallel``: registers the datasets, loads the markers of the
    finished stages and runs ``stage``. Returns the stages it ran (empty when it was finished)."""
    runner = StageRunner(pcfg.OUTPUT_DIR, num_gpus=1, num_threads=num_threads, default_config=pcfg.dump())
    with stage_logging(None):
        register_datasets(pcfg)
        for name in stages:
            runner.finished(name, log=False)
        run_stage(runner, pcfg, stage, stages)
    return list(runner.ran)


def _run_parallel(runner, pcfg, stages: List[str]) -> None:
    """Run ``stages`` with up to ``pcfg.PARALLEL_STAGES`` of them at once, each in a spawned process,
    starting every stage as soon as the stages it needs (``STAGE_NEEDS``) are finished, in
    ``STAGE_PRIORITY`` order. "data" runs first, here. A failed stage stops the scheduling: the stages
    already running finish (and keep their markers), then its error is raised."""
    run_stage(runner, pcfg, "data", stages)
    running_file = os.path.join(pcfg.OUTPUT_DIR, RUNNING_FILE) if pcfg.SHARE_CORES else None
    pending = sorted((s for s in stages if s != "data"), key=STAGE_PRIORITY.index)
    running, failed = {}, None
    ctx = multiprocessing.get_context("spawn")
    # A fresh process per stage (max_tasks_per_child=1): no catalog or memory left over from another stage.
    with concurrent.futures.ProcessPoolExecutor(max_workers=pcfg.PARALLEL_STAGES, mp_context=ctx,
                                                max_tasks_per_child=1) as pool:
        while pending or running:
            for stage in list(pending):
                if failed is not None or len(running) >= pcfg.PARALLEL_STAGES:
                    break
                if any(n in stages and n not in runner.records for n in _needs(pcfg, stage, stages)):
                    continue
                pending.remove(stage)
                if runner.finished(stage) is not None:
                    continue
                logger.info(f"[{stage}] starting in a worker process ({len(running) + 1} of "
                            f"{pcfg.PARALLEL_STAGES} running) -> {runner.stage_dir(stage)}")
                running[pool.submit(_stage_process, pcfg, stage, stages, runner.num_threads)] = stage
                if running_file:
                    write_running(running_file, running.values())
            if not running:
                if failed is not None or not pending:
                    break
                raise RuntimeError(f"Stages {pending} wait for stages that are not planned: {STAGE_NEEDS}")
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


def _rename_post(post, old, new):
    """``post`` after renaming output key ``old`` to ``new`` (so the report is keyed by the row name)."""
    def wrapped(result):
        result["outputs"][new] = result["outputs"].pop(old)
        return post(result)
    return wrapped


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

