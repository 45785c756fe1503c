"""The stages of the pipeline, each declared once in :data:`STAGES` (docs/PIPELINE.md, "Stages").

A :class:`Stage` says what it needs (stages whose outputs it reads), which rows of the results table it
fills, its priority among ready stages with ``PARALLEL_STAGES`` > 1, what its marker's ``outputs`` hold,
and its ``body``: ``body(ctx) -> StageCall``, the function the :class:`~.stages.StageRunner` runs (in the
calling process, or in ``--num-gpus`` processes through detectron2's ``launch`` for model stages) with
its arguments. The pseudo-label mode, threshold and fixed levels of an export are fields of its stage.

Planning (:func:`plan_stages`): the stages that fill a row of ``ROWS`` (or whose ``when`` holds), plus what
they need, in table order. Adding a stage is one entry; a stage whose body is a plain function of the
earlier stages' outputs, run here, is e.g. the best fixed level per click::

    Stage("pseudo_oracle_best", in_process(_oracle_best), needs=("pseudo_fixed",), pseudo_rows=("oracle_best",),
          produces=("oracle_best",), priority=135)

with ``_oracle_best(ctx) -> {"outputs": {...}, "metrics": {...}}`` (a new row is also named in
``config.PSEUDO_ROWS`` / ``MODEL_ROWS``: the table's column order).
"""
import dataclasses
import logging
import os
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

from ..data.json_io import load_json, write_json_atomic
from ..evaluation.oracle_best import oracle_best_labels
from ..evaluation.quality import best_report, pseudo_label_quality
from ..pseudo.click_agreement import agreeing_pseudo_labels
from ..pseudo.labels import build_labels, training_labels
from ..pseudo.merge import merge_pseudo_label_files
from .data import dataset_json, prepare_data
from .few_labels import mrn_sample_jsons, skip_mrn, unrefined
from .model_stages import (ExportJob, ExportSpec, RefineSpec, TrainSpec, checkpoint_file, checkpoint_iterations,
                           export_stage, refine_stage, train_stage)
from ..review.stage import PLAIN_JSON, run_review
from .scale import auto_opts

__all__ = ["Stage", "StageCall", "StageContext", "STAGES", "STAGE", "in_process", "main_output", "plan_stages",
           "row_plan", "stage_needs", "labels_source", "stage_of_row", "LABELS_FILE"]

logger = logging.getLogger(__name__)

LABELS_FILE = "labels.json"
MRN_TRAIN, MRN_VAL = "wssis_pipeline_mrn_train", "wssis_pipeline_mrn_val"


class StageCall(NamedTuple):
    """What the runner runs: ``fn(*args)`` here, or in every process of ``launch`` when ``launched`` (then
    ``fn`` is module-level and ``args`` picklable); ``pre()`` before it and ``post(result) -> result`` after
    it, here."""

    fn: Callable
    args: tuple = ()
    launched: bool = False
    pre: Optional[Callable[[], None]] = None
    post: Optional[Callable[[dict], dict]] = None


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage of the pipeline (module docstring).

    name: its folder under OUTPUT_DIR and its marker's "stage".
    body: ``body(ctx: StageContext) -> StageCall``.
    needs: stages whose outputs it reads: planned with it, finished before it starts.
    after: stages whose outputs it reads when they are planned (not planned for it).
    pseudo_rows, model_rows: rows of results.json it fills (a pseudo row: ``metrics.reports[row]`` of its
        marker; a model row: ``metrics.segm.AP``).
    produces: keys of its marker's ``outputs`` (more may follow, e.g. checkpoints).
    priority: start order among ready stages with PARALLEL_STAGES > 1 (lower first).
    when: planned whatever the rows when ``when(pcfg)`` holds.
    node: pipeline config node of its model (TEACHER, MRN, STUDENT, FULL_100).
    mode: MODEL.WSSIS.PSEUDO_LABEL_MODE of a pseudo-label export.
    thresholds: MODEL.WSSIS.THRESHOLD of each "threshold" export (None: PSEUDO.THRESHOLDS); the stage's
        row and output are the best of them (``quality.best_report``).
    levels: MODEL.WSSIS.FIXED_LEVEL of each "fixed" export (None: PSEUDO.FIXED_LEVELS).
    pseudo: a student's pseudo-label stage (its json + DATASETS.FULL is the training set).
    refines: a MaskRefineNet stage's pseudo-label stage (its main output is refined, each mask around its
        ``point``).
    """

    name: str
    body: Callable[["StageContext"], StageCall]
    needs: Tuple[str, ...] = ()
    after: Tuple[str, ...] = ()
    pseudo_rows: Tuple[str, ...] = ()
    model_rows: Tuple[str, ...] = ()
    produces: Tuple[str, ...] = ()
    priority: int = 0
    when: Optional[Callable] = None
    node: str = ""
    mode: str = ""
    thresholds: Optional[Tuple[float, ...]] = None
    levels: Optional[Tuple[int, ...]] = None
    pseudo: str = ""
    refines: str = ""


@dataclasses.dataclass
class StageContext:
    """What a body sees: the pipeline config, the stage, the planned stages and the runner (its
    ``records``: the markers of the finished stages)."""

    pcfg: object
    stage: Stage
    planned: List[str]
    runner: object

    @property
    def dir(self) -> str:
        return self.runner.stage_dir(self.stage.name)

    def output(self, stage: str, key: Optional[str] = None) -> str:
        """Output ``key`` (default: ``main_output``) of a finished stage's marker."""
        record = self.runner.records[stage]
        return record["outputs"][key] if key else main_output(record, stage)


def main_output(record: dict, stage: str) -> str:
    """The main output of stage ``stage``'s marker ``record``: the first key its entry ``produces`` (e.g. the
    best threshold's pseudo-labels of pseudo_threshold), else its first output."""
    produces = STAGE[stage].produces
    outputs = record["outputs"]
    return outputs[produces[0]] if produces else next(iter(outputs.values()))


def in_process(fn: Callable[[StageContext], dict]) -> Callable[[StageContext], StageCall]:
    """The body of a stage that runs ``fn(ctx) -> {"outputs": ..., "metrics": ...}`` in the calling process."""
    return lambda ctx: StageCall(fn, (ctx,))


def _test(pcfg) -> Tuple[str, ...]:
    """The sets models are evaluated on: DATASETS.VAL (for choosing) and DATASETS.TEST (the rows)."""
    return tuple(name for name in (pcfg.DATASETS.VAL, pcfg.DATASETS.TEST) if name)


def _data(ctx):
    return StageCall(prepare_data, (ctx.pcfg,))


def _train_spec(ctx, train: str, **kwargs) -> TrainSpec:
    """A SOLOv2 training stage of node ``ctx.stage.node`` on dataset ``train`` (bitmask masks)."""
    pcfg = ctx.pcfg
    return TrainSpec(node=ctx.stage.node, train=(train,), test=_test(pcfg), classes_from=pcfg.DATASETS.FULL,
                     forced=("INPUT.MASK_FORMAT", "bitmask"),
                     auto_opts=tuple(auto_opts(pcfg, ctx.runner.records, ctx.stage.node)), **kwargs)


def _teacher(ctx):
    fractions = tuple(ctx.pcfg.MRN.TEACHER_CHECKPOINTS) if "mrn_data" in ctx.planned else ()
    spec = _train_spec(ctx, ctx.pcfg.DATASETS.FULL, checkpoint_fractions=fractions)
    return StageCall(train_stage, (ctx.pcfg, ctx.dir, spec), launched=True)


def _full_100(ctx):
    return StageCall(train_stage, (ctx.pcfg, ctx.dir, _train_spec(ctx, ctx.pcfg.DATASETS.TRAIN_ALL)), launched=True)


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


def _export(ctx):
    """Pseudo-labels of the POINTS set with the final teacher in ``stage.mode`` (one export per fixed level or
    threshold), then their quality reports, keyed by the stage's row (``fixed_<level>``,
    ``threshold_<t>``: the row ``threshold`` and the stage's "threshold" output are the best threshold)."""
    pcfg, stage = ctx.pcfg, ctx.stage
    row = stage.pseudo_rows[0] if stage.pseudo_rows else stage.mode
    settings = [dict()]
    if stage.mode == "fixed":
        levels = pcfg.PSEUDO.FIXED_LEVELS if stage.levels is None else stage.levels
        settings = [dict(name=f"fixed_{lv}", level=int(lv)) for lv in levels]
    elif stage.mode == "threshold":
        thresholds = pcfg.PSEUDO.THRESHOLDS if stage.thresholds is None else stage.thresholds
        settings = [dict(name=f"threshold_{t:g}", threshold=float(t)) for t in thresholds]
    teacher = "teacher_clicks" if stage.name == "pseudo_adaptive" and "teacher_clicks" in ctx.planned else "teacher"
    weights = os.path.join(ctx.runner.stage_dir(teacher), "model_final.pth")
    jobs = []
    for setting in settings:
        name = setting.pop("name", row)
        output = os.path.join(ctx.dir, f"{name}.json" if len(settings) > 1 else "pseudo_labels.json")
        jobs.append(ExportJob(name=name, mode=stage.mode, dataset=pcfg.DATASETS.POINTS, weights=weights,
                              output=output, **setting))
    spec = ExportSpec(jobs=tuple(jobs), classes_from=pcfg.DATASETS.FULL,
                      auto_opts=tuple(auto_opts(pcfg, ctx.runner.records, "TEACHER")))
    post = _report_post(pcfg, [j.name for j in jobs])
    if stage.mode == "threshold":
        post = _best_threshold(post, row, [j.name for j in jobs])
    return StageCall(export_stage, (pcfg, ctx.dir, spec), launched=True, post=post)


def _best_threshold(report_post, row: str, names: Sequence[str]):
    """post() of the threshold exports: their reports, then output and report ``row`` = the best threshold's
    (the first one when there are no reports: no POINTS_GT)."""
    def post(result):
        result = report_post(result)
        reports = result["metrics"].get("reports") or {}
        best = best_report(reports) or names[0]
        result["outputs"][row] = result["outputs"][best]
        if best in reports:
            reports[row] = reports[best]
        result["metrics"]["best_threshold"] = result["metrics"]["jobs"][best]["threshold"]
        logger.info(f"SSIS baseline: {best} is the best threshold by pseudo-label AP; its pseudo-labels are the "
                    f"{row!r} row and student_threshold's")
        return result
    return post


def _oracle_best(ctx) -> dict:
    """Per click, the fixed-level pseudo-label with the highest IoU with its true mask (``oracle_best_labels``:
    the best fixed level per click, not a bound of level choice) and its quality report."""
    pcfg, row = ctx.pcfg, ctx.stage.pseudo_rows[0]
    record = ctx.runner.records["pseudo_fixed"]
    jobs = record["metrics"]["jobs"]
    files = [record["outputs"][k] for k in sorted(jobs, key=lambda k: jobs[k]["level"])]
    gt = dataset_json(pcfg.DATASETS.POINTS_GT)
    best = oracle_best_labels(files, gt)
    path = write_json_atomic(best, os.path.join(ctx.dir, "pseudo_labels.json"))
    report = pseudo_label_quality(path, gt)
    write_json_atomic(report, os.path.join(ctx.dir, "pseudo_labels_report.json"))
    logger.info(f"oracle_best: AP {report['AP']}, mean IoU {report['mean_iou']} (clicks per level "
                f"{best['info']['clicks_per_source']}) -> {path}")
    return {"outputs": {row: path}, "metrics": {"reports": {row: report}, "info": best["info"]}}


def _mrn_data(ctx):
    """Teacher predictions on the FULL images from the chosen checkpoints, paired with their GT."""
    pcfg, d = ctx.pcfg, ctx.dir
    max_iter = ctx.runner.records["teacher"]["max_iter"]
    jobs = []
    for n in checkpoint_iterations(max_iter, pcfg.MRN.TEACHER_CHECKPOINTS):
        weights = checkpoint_file(ctx.runner.stage_dir("teacher"), n, max_iter)
        if not os.path.isfile(weights):
            raise FileNotFoundError(f"Teacher checkpoint {weights} (after {n} of {max_iter} iterations) is missing")
        jobs.append(ExportJob(name=f"iter_{n}", mode=pcfg.MRN.DATA_MODE, dataset=pcfg.DATASETS.FULL, weights=weights,
                              output=os.path.join(d, f"iter_{n}.json")))
    spec = ExportSpec(jobs=tuple(jobs), classes_from=pcfg.DATASETS.FULL,
                      auto_opts=tuple(auto_opts(pcfg, ctx.runner.records, "TEACHER")))

    def post(result):  # too few samples: synthetic ones from the full masks, or no MRN (few_labels.py)
        samples = mrn_sample_jsons(pcfg, [j.output for j in jobs], dataset_json(pcfg.DATASETS.FULL), d)
        result["outputs"].update(samples["outputs"])
        result["metrics"].update(samples["metrics"])
        return result
    return StageCall(export_stage, (pcfg, d, spec), launched=True, post=post)


def _mrn(ctx):
    record = ctx.runner.records["mrn_data"]
    outputs = record["outputs"]
    if "mrn_train" not in outputs:
        return StageCall(skip_mrn, ((record.get("metrics") or {}).get("mrn_skipped") or "no training sample",))
    register, test = [(MRN_TRAIN, outputs["mrn_train"], "mrn")], ()
    if "mrn_val" in outputs:
        register.append((MRN_VAL, outputs["mrn_val"], "mrn"))
        test = (MRN_VAL,)
    spec = TrainSpec(node="MRN", train=(MRN_TRAIN,), test=test, classes_from=ctx.pcfg.DATASETS.FULL,
                     register=tuple(register))
    return StageCall(train_stage, (ctx.pcfg, ctx.dir, spec), launched=True)


def _refine(ctx):
    """The pseudo-labels of ``stage.refines`` refined by the MaskRefineNet, each mask around its ``point``
    (adaptive: the click; threshold: the mask's centre of mass snapped into it, no click); output and report
    keyed by the row."""
    row = ctx.stage.pseudo_rows[0]
    pseudo, output = ctx.output(ctx.stage.refines), os.path.join(ctx.dir, "pseudo_labels.json")
    report = _report_post(ctx.pcfg, [row])

    def post(result):
        result["outputs"][row] = result["outputs"].pop("pseudo_labels")
        return report(result)
    skipped = (ctx.runner.records["mrn"].get("metrics") or {}).get("skipped")
    if skipped:  # no MaskRefineNet (few_labels.py): the pseudo-labels passed on unrefined
        return StageCall(unrefined, (pseudo, output, skipped), post=post)
    spec = RefineSpec(pseudo=pseudo, output=output, weights=ctx.output("mrn", "weights"),
                      classes_from=ctx.pcfg.DATASETS.FULL)
    return StageCall(refine_stage, (ctx.pcfg, ctx.dir, spec), launched=True, post=post)


def _labels(ctx) -> dict:
    """labels.json from FULL, the clicks and the final pseudo-labels; its quality when POINTS_GT is given."""
    pcfg = ctx.pcfg
    source = labels_source(ctx.planned)
    pseudo_json = ctx.output(source)
    full_json, points_json = dataset_json(pcfg.DATASETS.FULL), dataset_json(pcfg.DATASETS.POINTS)
    labels = build_labels(load_json(full_json), load_json(points_json), load_json(pseudo_json),
                          fallback_radius=pcfg.LABELS.FALLBACK_RADIUS, names=(full_json, points_json, pseudo_json),
                          image_root=pcfg.DATA.CUSTOM.IMAGE_ROOT)
    labels["info"]["pseudo_stage"] = source
    path = write_json_atomic(labels, os.path.join(pcfg.OUTPUT_DIR, LABELS_FILE))
    metrics = {k: v for k, v in labels["info"].items() if k.startswith("num_")}
    # a label-free check of the teacher (few_labels.py): how many pseudo-masks hold their own click
    metrics["num_pseudo_holding_click"] = len(agreeing_pseudo_labels(load_json(pseudo_json))[0]["annotations"])
    logger.info(f"{path}: {metrics['num_images']} images, {metrics['num_full_annotations']} true masks, "
                f"{metrics['num_clicks']} clicks ({metrics['num_pseudo_labels']} pseudo-labels from {source}, "
                f"{metrics['num_fallback']} fallbacks)")
    if pcfg.DATASETS.POINTS_GT:
        gt = dataset_json(pcfg.DATASETS.POINTS_GT)
        metrics["report"] = pseudo_label_quality(path, gt)
        logger.info(f"labels.json on the clicked images vs {gt}: AP {metrics['report']['AP']}, mean IoU "
                    f"{metrics['report']['mean_iou']}")
    return {"outputs": {"labels": path}, "metrics": metrics, "pseudo_stage": source}


def _student(ctx):
    """SOLOv2 on DATASETS.FULL + the pseudo-labels of ``stage.pseudo`` (merged into ``train.json``), or on
    labels.json without its flagged annotations when that is what the labels stage made of them."""
    pcfg, stage = ctx.pcfg, ctx.stage
    train_json = os.path.join(ctx.dir, "train.json")
    pseudo_json = ctx.output(stage.pseudo)
    full_json = dataset_json(pcfg.DATASETS.FULL)
    on_labels = "labels" in stage_needs(stage.name, ctx.planned)

    def pre():
        if on_labels and not os.path.isfile(train_json):
            labels_json = ctx.output("labels", "labels")
            kept, removed = training_labels(load_json(labels_json))
            write_json_atomic(kept, train_json)
            logger.info(f"{train_json}: {labels_json} without its {removed} flagged annotations (fallback masks "
                        f"of clicks without a pseudo-label): {len(kept['annotations'])} annotations")
        elif not os.path.isfile(train_json):
            info = merge_pseudo_label_files(full_json, pseudo_json, train_json)
            logger.info(f"{train_json}: {info['num_images']} images, {info['num_annotations']} annotations "
                        f"({full_json} + {pseudo_json})")
    name = f"wssis_pipeline_{stage.name}_train"
    spec = _train_spec(ctx, name, register=((name, train_json, "train"),))
    return StageCall(train_stage, (pcfg, ctx.dir, spec), launched=True, pre=pre)


def _review(ctx):
    """A click-free teacher pass over the clicked images, then the review (``wssis_d2.review.stage``)."""
    pcfg = ctx.pcfg
    score = float(min(pcfg.REVIEW.PASS_SCORE, pcfg.REVIEW.ORPHAN_SCORE))
    plain = os.path.join(ctx.dir, PLAIN_JSON.format(score=score))
    job = ExportJob(name="plain", mode="threshold", dataset=pcfg.DATASETS.POINTS, output=plain, threshold=score,
                    weights=os.path.join(ctx.runner.stage_dir("teacher"), "model_final.pth"))
    spec = ExportSpec(jobs=(job,), classes_from=pcfg.DATASETS.FULL,
                      auto_opts=tuple(auto_opts(pcfg, ctx.runner.records, "TEACHER")))

    def post(result):
        review = run_review(pcfg, ctx.runner.records, ctx.dir, plain)
        return {"outputs": dict(result["outputs"], **review["outputs"]),
                "metrics": dict(result["metrics"], review=review["metrics"])}
    return StageCall(export_stage, (pcfg, ctx.dir, spec), launched=True, post=post)


def _teacher_clicks(ctx):
    """PSEUDO.CLICK_ROUND: SOLOv2 (TEACHER node) on DATASETS.FULL + the first teacher's adaptive pseudo-labels
    (``pseudo_round1``) that hold their click (``agreeing_pseudo_labels``), merged into ``train.json``."""
    pcfg = ctx.pcfg
    train_json = os.path.join(ctx.dir, "train.json")
    pseudo_json, full_json = ctx.output("pseudo_round1", "adaptive"), dataset_json(pcfg.DATASETS.FULL)

    def pre():
        if not os.path.isfile(train_json):
            agreeing, removed = agreeing_pseudo_labels(load_json(pseudo_json))
            kept = write_json_atomic(agreeing, os.path.join(ctx.dir, "pseudo_agreeing.json"))
            info = merge_pseudo_label_files(full_json, kept, train_json)
            logger.info(f"{train_json}: {info['num_images']} images, {info['num_annotations']} annotations "
                        f"({full_json} + {len(agreeing['annotations'])} pseudo-labels of {pseudo_json} that hold "
                        f"their click; {removed} removed)")
    name = "wssis_pipeline_teacher_clicks_train"
    spec = _train_spec(ctx, name, register=((name, train_json, "train"),))
    return StageCall(train_stage, (pcfg, ctx.dir, spec), launched=True, pre=pre)


def _click_round(pcfg) -> bool:
    return bool(pcfg.PSEUDO.CLICK_ROUND)


_TRAINED = ("weights", "config")
STAGES: Tuple[Stage, ...] = (
    Stage("data", _data, when=lambda pcfg: True, produces=("full", "points"), priority=0),
    Stage("teacher", _teacher, needs=("data",), model_rows=("teacher",), produces=_TRAINED, priority=10,
          node="TEACHER"),
    Stage("pseudo_threshold", _export, needs=("teacher",), pseudo_rows=("threshold",), produces=("threshold",),
          priority=90, mode="threshold"),
    Stage("pseudo_fixed", _export, needs=("teacher",), pseudo_rows=("fixed_best",), priority=130, mode="fixed"),
    Stage("pseudo_round1", _export, needs=("teacher",), produces=("adaptive",), priority=31, mode="adaptive",
          when=_click_round),
    Stage("teacher_clicks", _teacher_clicks, needs=("data", "pseudo_round1"), produces=_TRAINED, priority=32,
          when=_click_round, node="TEACHER"),
    Stage("pseudo_adaptive", _export, needs=("teacher",), after=("teacher_clicks",), pseudo_rows=("adaptive",),
          produces=("adaptive",), priority=30, mode="adaptive"),
    Stage("pseudo_oracle_size", _export, needs=("teacher",), pseudo_rows=("oracle_size",), produces=("oracle_size",),
          priority=120, mode="oracle_size"),
    Stage("pseudo_oracle_best", in_process(_oracle_best), needs=("pseudo_fixed",), pseudo_rows=("oracle_best",),
          produces=("oracle_best",), priority=135),
    Stage("mrn_data", _mrn_data, needs=("teacher",), produces=("mrn_train",), priority=40),
    Stage("mrn", _mrn, needs=("mrn_data",), produces=_TRAINED, priority=50, node="MRN"),
    Stage("pseudo_adaptive_mrn", _refine, needs=("pseudo_adaptive", "mrn"), pseudo_rows=("adaptive_mrn",),
          produces=("adaptive_mrn",), priority=60, refines="pseudo_adaptive"),
    Stage("pseudo_threshold_mrn", _refine, needs=("pseudo_threshold", "mrn"), pseudo_rows=("threshold_mrn",),
          produces=("threshold_mrn",), priority=95, refines="pseudo_threshold"),
    Stage("labels", in_process(_labels), needs=("data", "pseudo_adaptive"), after=("pseudo_adaptive_mrn",),
          produces=("labels",), priority=70, when=lambda pcfg: pcfg.DATA.KIND == "custom"),
    Stage("review", _review, needs=("data", "teacher", "pseudo_adaptive"), after=("pseudo_adaptive_mrn", "labels"),
          produces=("review",), priority=75, when=lambda pcfg: pcfg.REVIEW.ENABLED),
    Stage("student_threshold", _student, needs=("data", "pseudo_threshold"), model_rows=("student_threshold",),
          produces=_TRAINED, priority=100, node="STUDENT", pseudo="pseudo_threshold"),
    Stage("student_points", _student, needs=("data", "pseudo_adaptive"), model_rows=("student_points",),
          produces=_TRAINED, priority=110, node="STUDENT", pseudo="pseudo_adaptive"),
    Stage("student_points_mrn", _student, needs=("data", "pseudo_adaptive_mrn"), model_rows=("student_points_mrn",),
          produces=_TRAINED, priority=80, node="STUDENT", pseudo="pseudo_adaptive_mrn"),
    Stage("full_100", _full_100, needs=("data",), model_rows=("full_100",), produces=_TRAINED, priority=20,
          node="FULL_100"),
)
STAGE: Dict[str, Stage] = {s.name: s for s in STAGES}


def stage_of_row(row: str) -> str:
    """The stage that fills results row ``row``."""
    for stage in STAGES:
        if row in stage.pseudo_rows + stage.model_rows:
            return stage.name
    raise KeyError(f"No stage of the table fills row {row!r}")


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


def plan_stages(pcfg) -> List[str]:
    """Names of the stages the profile's ROWS need (``row_plan``): those that fill a row or whose ``when``
    holds, and the stages they need, in table order."""
    pseudo_rows, model_rows, _ = row_plan(pcfg)
    rows = set(pseudo_rows) | set(model_rows)
    planned = {s.name for s in STAGES if rows & set(s.pseudo_rows + s.model_rows) or (s.when and s.when(pcfg))}
    todo = list(planned)
    while todo:
        for need in STAGE[todo.pop()].needs:
            if need not in planned:
                planned.add(need)
                todo.append(need)
    return [s.name for s in STAGES if s.name in planned]


def labels_source(planned: Sequence[str]) -> str:
    """The pseudo-label stage labels.json is made from: refined ones when MRN is planned."""
    return "pseudo_adaptive_mrn" if "pseudo_adaptive_mrn" in planned else "pseudo_adaptive"


def stage_needs(name: str, planned: Sequence[str]) -> Tuple[str, ...]:
    """The planned stages ``name`` waits for: its ``needs``, its planned ``after`` stages, and "labels" for the
    student of the pseudo-labels labels.json is made from (it trains on labels.json: custom runs)."""
    stage = STAGE[name]
    needs = stage.needs + tuple(n for n in stage.after if n in planned)
    if "labels" in planned and stage.pseudo and stage.pseudo == labels_source(planned):
        needs += ("labels",)
    return needs
