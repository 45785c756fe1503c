"""The stages that run models, each called in every process by detectron2's ``launch``: training
(teacher, MaskRefineNet, students, the 100% model), pseudo-label exports and the MRN refinement.

Every function takes the pipeline config, the stage folder and a typed, picklable spec (:class:`TrainSpec`,
:class:`ExportSpec` of :class:`ExportJob` s, :class:`RefineSpec`), builds the stage's detectron2 config
(``stage_cfg``), saves it as ``<stage>/config.yaml`` and returns the stage result
(``{"outputs": {...}, "metrics": {...}, ...}``) that the parent writes into the marker.
"""
import dataclasses
import logging
import os
from typing import List, Optional, Sequence, Tuple

import detectron2.utils.comm as comm
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.data import MetadataCatalog
from detectron2.modeling import build_model
from detectron2.utils.env import seed_all_rng

from ..config import add_wssis_config
from ..engine import trainer_class
from ..engine.checkpoints import SaveAtIterations, checkpoint_name
from ..mrn.refine import refine_pseudo_labels
from ..utils.part_files import atomic_output
from ..checkpoint_check import checked
from ..utils.errors import WSSISInputError
from .config import node_values
from .cores import RUNNING_FILE, CoreShareHook
from .data import register_datasets, register_json_dataset
from .scale import explicit_input_keys

__all__ = [
    "TrainSpec",
    "ExportJob",
    "ExportSpec",
    "RefineSpec",
    "stage_cfg",
    "check_stage_opts",
    "checkpoint_iterations",
    "checkpoint_file",
    "train_stage",
    "export_stage",
    "refine_stage",
]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrainSpec:
    """A training stage.

    node: TEACHER / STUDENT / FULL_100 / MRN (the pipeline config node of the model config).
    train, test: dataset names. classes_from: the dataset whose class count sets NUM_CLASSES.
    register: (name, json, kind) of jsons the run made (``register_json_dataset``).
    forced: KEY VALUE pairs merged last (``stage_cfg``). auto_opts: the data stage's input scale choice.
    checkpoint_fractions: fractions of the schedule whose checkpoints are saved as well
    (``engine.checkpoints.SaveAtIterations``, whatever CHECKPOINT_PERIOD).
    """

    node: str
    train: Tuple[str, ...]
    test: Tuple[str, ...] = ()
    classes_from: str = ""
    register: Tuple[Tuple[str, str, str], ...] = ()
    forced: Tuple = ()
    auto_opts: Tuple = ()
    checkpoint_fractions: Tuple[float, ...] = ()


@dataclasses.dataclass(frozen=True)
class ExportJob:
    """One pseudo-label export with the teacher: ``mode`` is MODEL.WSSIS.PSEUDO_LABEL_MODE; ``threshold``
    (mode "threshold") MODEL.WSSIS.THRESHOLD and ``level`` (mode "fixed") MODEL.WSSIS.FIXED_LEVEL when set.
    ``name`` keys the output (and its quality report) in the marker."""

    name: str
    mode: str
    dataset: str
    weights: str
    output: str
    threshold: Optional[float] = None
    level: Optional[int] = None

    def opts(self) -> list:
        """The model-config KEY VALUE pairs of the job (merged after PSEUDO.OPTS)."""
        opts = [] if self.threshold is None else ["MODEL.WSSIS.THRESHOLD", self.threshold]
        opts += [] if self.level is None else ["MODEL.WSSIS.FIXED_LEVEL", self.level]
        return opts + ["MODEL.WSSIS.PSEUDO_LABEL_MODE", self.mode, "MODEL.WSSIS.EXPORT_PSEUDO_LABELS", True,
                       "MODEL.WSSIS.EXPORT_PATH", self.output, "MODEL.WEIGHTS", self.weights]


@dataclasses.dataclass(frozen=True)
class ExportSpec:
    """Exports with the teacher config; ``classes_from`` and ``auto_opts`` as in :class:`TrainSpec`."""

    jobs: Tuple[ExportJob, ...]
    classes_from: str
    auto_opts: Tuple = ()


@dataclasses.dataclass(frozen=True)
class RefineSpec:
    """The MaskRefineNet refinement of the ``pseudo`` json into ``output`` with ``weights``."""

    pseudo: str
    output: str
    weights: str
    classes_from: str


def stage_cfg(pcfg, node: str, stage_dir: str, *, train: Sequence[str] = (), test: Sequence[str] = (),
              num_classes: Optional[int] = None, opts: Sequence = (), forced: Sequence = (),
              auto_opts: Sequence = ()):
    """The detectron2 config of a stage, frozen.

    Order: the node's model config <- SOLVER.MAX_ITER / STEPS of the node (STEPS scaled with MAX_ITER when
    not given) <- NUM_CLASSES (SOLOv2 or MRN, from the data), SEED and SAMPLE_SEEDS <- ``auto_opts`` (the
    input scale and detection cap the data stage chose, ``pipeline/scale.py``; its INPUT size and tile keys
    left out when the node's OPTS or ``opts`` set any of them, its detection cap kept) <- the node's OPTS
    <- ``opts`` <- DATASETS, OUTPUT_DIR and ``forced`` (never overridden).
    """
    config_file, max_iter, steps, node_opts = node_values(pcfg, node)
    cfg = get_cfg()
    add_wssis_config(cfg)
    cfg.merge_from_file(config_file)
    if max_iter:
        base = cfg.SOLVER.MAX_ITER
        if not steps and cfg.SOLVER.STEPS and base:
            steps = [int(round(s * max_iter / base)) for s in cfg.SOLVER.STEPS]
            steps = [s for s in steps if 0 < s < max_iter]
        cfg.SOLVER.MAX_ITER = int(max_iter)
    if steps:
        cfg.SOLVER.STEPS = tuple(int(s) for s in steps)
    if num_classes is not None:
        if cfg.MODEL.META_ARCHITECTURE == "MaskRefineNet":
            cfg.MODEL.MRN.NUM_CLASSES = num_classes
        else:
            cfg.MODEL.SOLOV2.NUM_CLASSES = num_classes
    cfg.SEED = pcfg.SEED
    cfg.DATALOADER.WSSIS_SAMPLE_SEEDS = pcfg.SAMPLE_SEEDS
    if auto_opts:  # the input-size keys of the choice only where the OPTS set none (they win as a whole)
        keep_sizes = not explicit_input_keys(node_opts + list(opts))
        cfg.merge_from_list([x for k, v in zip(auto_opts[0::2], auto_opts[1::2])
                             if keep_sizes or not explicit_input_keys([k]) for x in (k, v)])
    try:
        cfg.merge_from_list(node_opts + list(opts))
    except (AssertionError, KeyError, ValueError, TypeError) as e:  # yacs: unknown key, wrong type
        raise WSSISInputError(f"{node}.OPTS {node_opts}" + (f" + the stage's OPTS {list(opts)} (PSEUDO.OPTS for the "
                              "exports)" if opts else "") + f" do not fit the "
                              f"model config {config_file}: {e}") from e
    cfg.merge_from_list(["DATASETS.TRAIN", tuple(train), "DATASETS.TEST", tuple(test), "OUTPUT_DIR", stage_dir]
                        + list(forced))
    cfg.freeze()
    return cfg


def check_stage_opts(pcfg, nodes: Sequence[str], stage_dir: str) -> None:
    """Build the config of every node of ``nodes`` (TEACHER also with PSEUDO.OPTS, as its exports do), so
    that OPTS that do not fit their model config stop the run before any stage, in one line
    (``WSSISInputError``)."""
    for node in nodes:
        stage_cfg(pcfg, node, stage_dir)
        if node == "TEACHER" and pcfg.PSEUDO.OPTS:
            stage_cfg(pcfg, node, stage_dir, opts=list(pcfg.PSEUDO.OPTS))


def checkpoint_iterations(max_iter: int, fractions: Sequence[float]) -> List[int]:
    """Iteration counts n (1..max_iter) of the teacher checkpoints at ``fractions`` of the schedule."""
    return [min(max_iter, max(1, int(round(f * max_iter)))) for f in fractions]


def checkpoint_file(stage_dir: str, n: int, max_iter: int) -> str:
    """The checkpoint after n iterations (``engine.checkpoints.checkpoint_name``: ``model_final.pth`` for
    n == max_iter, else ``model_{n - 1:07d}.pth``, the periodic checkpointer's name)."""
    return os.path.join(stage_dir, checkpoint_name(n, max_iter) + ".pth")


def _setup(cfg, stage_dir: str):
    """Save the effective config (main process) and seed like detectron2's ``default_setup``."""
    if comm.is_main_process():
        os.makedirs(stage_dir, exist_ok=True)
        path = os.path.join(stage_dir, "config.yaml")
        with atomic_output(path) as f:
            f.write(cfg.dump())
        logger.info(f"Effective config saved to {path}")
    seed_all_rng(None if cfg.SEED < 0 else cfg.SEED + comm.get_rank())


def _num_classes(dataset: str) -> int:
    return len(MetadataCatalog.get(dataset).thing_classes)


def _register(pcfg, register: Sequence = ()):
    """The run's datasets in this process, and the (name, json, kind) jsons the run made."""
    register_datasets(pcfg)
    for name, json_file, kind in register:
        register_json_dataset(name, json_file, kind=kind)


def train_stage(pcfg, stage_dir: str, spec: TrainSpec) -> dict:
    """Train (resuming from ``<stage>/last_checkpoint`` when there is one) and evaluate on the test sets."""
    _register(pcfg, spec.register)
    cfg = stage_cfg(pcfg, spec.node, stage_dir, train=spec.train, test=spec.test,
                    num_classes=_num_classes(spec.classes_from), forced=spec.forced, auto_opts=spec.auto_opts)
    saved = checkpoint_iterations(cfg.SOLVER.MAX_ITER, spec.checkpoint_fractions)
    _setup(cfg, stage_dir)
    trainer = trainer_class(cfg)(cfg)
    if saved:
        trainer.register_hooks([SaveAtIterations(saved)])
    if pcfg.SHARE_CORES and pcfg.PARALLEL_STAGES > 1:
        trainer.register_hooks([CoreShareHook(os.path.join(pcfg.OUTPUT_DIR, RUNNING_FILE), os.cpu_count() or 1,
                                              floor=max(1, pcfg.NUM_THREADS))])
    trainer.resume_or_load(resume=True)
    start_iter = trainer.start_iter
    if start_iter > 0:
        logger.info(f"Resuming {stage_dir} at iteration {start_iter} of {cfg.SOLVER.MAX_ITER}")
    logger.info(f"Training {spec.node.lower()} on {list(cfg.DATASETS.TRAIN)} for {cfg.SOLVER.MAX_ITER} "
                f"iterations (batch {cfg.SOLVER.IMS_PER_BATCH}); output {stage_dir}")
    trainer.train()
    results = getattr(trainer, "_last_eval_results", None) or {}
    outputs = {"weights": os.path.join(stage_dir, "model_final.pth"),
               "config": os.path.join(stage_dir, "config.yaml")}
    for n in saved:
        outputs[f"checkpoint_{n}"] = checkpoint_file(stage_dir, n, cfg.SOLVER.MAX_ITER)
    return {"outputs": outputs, "metrics": dict(results), "start_iter": start_iter,
            "max_iter": cfg.SOLVER.MAX_ITER, "ims_per_batch": cfg.SOLVER.IMS_PER_BATCH,
            "train": list(cfg.DATASETS.TRAIN), "test": list(cfg.DATASETS.TEST),
            "checkpoint_iterations": saved}


def export_stage(pcfg, stage_dir: str, spec: ExportSpec) -> dict:
    """Pseudo-label exports with the teacher (``PseudoLabelTrainer.test``, what ``train_net.py --eval-only``
    runs with a pseudo-label config), one per job; ``metrics.jobs`` keeps each job's mode, level and threshold
    as typed fields (nothing parses them back out of the job names). A job whose output exists is skipped (the
    exporter writes it atomically, last); otherwise it runs from the start (the exporter truncates its part files).
    """
    _register(pcfg)
    outputs, metrics = {}, {}
    for job in spec.jobs:
        outputs[job.name] = job.output
        if os.path.isfile(job.output):
            logger.info(f"{job.output} exists: export {job.name} skipped")
            continue
        job_dir = stage_dir if len(spec.jobs) == 1 else os.path.join(stage_dir, job.name)
        cfg = stage_cfg(pcfg, "TEACHER", job_dir, test=[job.dataset], num_classes=_num_classes(spec.classes_from),
                        opts=list(pcfg.PSEUDO.OPTS) + job.opts(), auto_opts=spec.auto_opts)
        _setup(cfg, job_dir)
        trainer_cls = trainer_class(cfg)  # PseudoLabelTrainer: MODEL.WSSIS.EXPORT_PSEUDO_LABELS is set
        model = trainer_cls.build_model(cfg)
        checked(DetectionCheckpointer(model, save_dir=job_dir)).load(job.weights)
        logger.info(f"Exporting {job.mode} pseudo-labels of {job.dataset} with {job.weights} -> {job.output}")
        result = trainer_cls.test(cfg, model)
        metrics[job.name] = dict(result.get("pseudo_labels", {})) if result else {}
    comm.synchronize()
    jobs = {job.name: {"mode": job.mode, "level": job.level, "threshold": job.threshold} for job in spec.jobs}
    return {"outputs": outputs, "metrics": {"export": metrics, "jobs": jobs}}


def refine_stage(pcfg, stage_dir: str, spec: RefineSpec) -> dict:
    """Refine a pseudo-label json with the trained MaskRefineNet (resumes from its part files)."""
    _register(pcfg)
    cfg = stage_cfg(pcfg, "MRN", stage_dir, num_classes=_num_classes(spec.classes_from),
                    forced=["MODEL.WEIGHTS", spec.weights])
    _setup(cfg, stage_dir)
    model = build_model(cfg)
    checked(DetectionCheckpointer(model)).load(spec.weights)
    info = {"weights": spec.weights, "config_file": os.path.join(stage_dir, "config.yaml"),
            "depth": cfg.MODEL.MRN.DEPTH, "crop_size": cfg.MODEL.MRN.CROP_SIZE,
            "box_scale": cfg.MODEL.MRN.BOX_SCALE, "mask_threshold": cfg.MODEL.MRN.MASK_THRESHOLD,
            "heatmap_mode": cfg.MODEL.MRN.HEATMAP_MODE, "device": str(model.device)}
    result = refine_pseudo_labels(model, spec.pseudo, spec.output, image_format=cfg.INPUT.FORMAT, info=info)
    keys = ("num_annotations", "num_refined", "num_kept_coarse", "instances_per_s_all_ranks")
    return {"outputs": {"pseudo_labels": spec.output},
            "metrics": {"refine": {k: result[k] for k in keys if k in result}}}

