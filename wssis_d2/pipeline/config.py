"""Every key of a pipeline config (``configs/pipeline/*.yaml``), with its default.

A pipeline config names the model configs of the stages (teacher / student SOLOv2, MaskRefineNet) and
adds per-stage overrides; it is not a detectron2 model config. It is an fvcore ``CfgNode`` (the base of
detectron2's): YAML files with ``_BASE_`` and ``KEY VALUE`` overrides on the command line work as usual.
"""
import os

from fvcore.common.config import CfgNode as CN

from ..review.risk import DEFAULT_BIAS, DEFAULT_WEIGHTS

__all__ = ["CUSTOM_NAMES", "PSEUDO_ROWS", "MODEL_ROWS", "get_pipeline_cfg", "load_pipeline_cfg", "node_values",
           "resolve_path"]

# Rows of the results table, in table order (results.json keys).
PSEUDO_ROWS = ("threshold", "threshold_mrn", "fixed_best", "adaptive", "adaptive_mrn", "oracle_size", "oracle_best")
MODEL_ROWS = ("teacher", "student_threshold", "student_points", "student_points_mrn", "full_100")

# DATASETS names of a DATA.KIND custom run ("" where the file is not given).
CUSTOM_NAMES = {"FULL": "wssis_custom_full", "POINTS": "wssis_custom_points",
                "POINTS_GT": "wssis_custom_points_gt", "TEST": "wssis_custom_val", "VAL": "wssis_custom_val_only",
                "TRAIN_ALL": "wssis_custom_train_all"}

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _train_node(config):
    node = CN()
    # Model config of the stage (detectron2 YAML; relative paths: the working directory, then the repo).
    node.CONFIG = config
    # SOLVER.MAX_ITER of the stage; 0 keeps the model config's.
    node.MAX_ITER = 0
    # SOLVER.STEPS; [] keeps the model config's, scaled by MAX_ITER / its MAX_ITER when MAX_ITER is set.
    node.STEPS = []
    # Overrides of the model config, a flat list KEY VALUE KEY VALUE ... (applied last, except that
    # OUTPUT_DIR and DATASETS are always the pipeline's).
    node.OPTS = []
    return node


def get_pipeline_cfg():
    """The pipeline config with every key at its default (a fresh ``CfgNode``)."""
    cfg = CN()
    # Root of the run: one folder per stage, results.md / results.json. "{OUTPUT_DIR}" in other paths is
    # replaced by this value.
    cfg.OUTPUT_DIR = "output/pipeline"
    # Torch intra-op threads in every stage process (0: torch's default). 1 is fastest on a busy 2-core CPU.
    cfg.NUM_THREADS = 0
    # Stages run at once, each in its own process, as their inputs become ready (1: one after the other in
    # this process). For CPU machines: one stage per core with NUM_THREADS 1. Needs --num-gpus 1.
    cfg.PARALLEL_STAGES = 1
    # With PARALLEL_STAGES > 1: a training stage re-reads how many stages run and takes cores // running
    # torch threads (at least NUM_THREADS), so one left alone uses every core (pipeline/cores.py).
    cfg.SHARE_CORES = False
    # detectron2 SEED of every model stage (each process seeds with SEED + rank; < 0: random).
    cfg.SEED = 0
    # DATALOADER.WSSIS_SAMPLE_SEEDS of every training stage: augmentation draws seeded per sample, so that
    # --num-gpus N trains on the same draws as 1 process (docs/DISTRIBUTED.md). Off: detectron2's draws.
    cfg.SAMPLE_SEEDS = False

    cfg.DATA = CN()
    # Datasets root; "" = $DETECTRON2_DATASETS (default "datasets"). The COCO splits are read from
    # <ROOT>/coco/wssis_splits, the shapes dataset from <ROOT>/wssis_shapes.
    cfg.DATA.ROOT = ""
    # Which data: "shapes" (embedded synthetic dataset) or "coco" (standard names under ROOT), or "custom"
    # (your own files, DATA.CUSTOM; the DATASETS names are then set to CUSTOM_NAMES).
    cfg.DATA.KIND = "shapes"
    # Fully-labeled percentage and seed of the split whose names are registered (the DATASETS below).
    cfg.DATA.PERCENT = 5
    cfg.DATA.SPLIT_SEED = 1
    cfg.DATA.SHAPES = CN()
    # Generate <ROOT>/wssis_shapes (images, train/val json, the PERCENT split) when it is missing.
    cfg.DATA.SHAPES.GENERATE = False
    cfg.DATA.SHAPES.NUM_TRAIN = 1000
    cfg.DATA.SHAPES.NUM_VAL = 200
    # Images of a "test" split (wssis_shapes_test), generated beside train and val (0: none).
    cfg.DATA.SHAPES.NUM_TEST = 0
    # Image side in pixels.
    cfg.DATA.SHAPES.SIZE = 320
    # Generator seed (every image is seeded by (SEED, split, index)).
    cfg.DATA.SHAPES.SEED = 0
    # At most this many shapes per image; smallest instance scale in pixels.
    cfg.DATA.SHAPES.MAX_INSTANCES = 9
    # At least this many shapes per image (the count is uniform in [MIN_INSTANCES, MAX_INSTANCES]).
    cfg.DATA.SHAPES.MIN_INSTANCES = 3
    cfg.DATA.SHAPES.MIN_SIZE = 10.0
    # Largest instance scale, fraction of the image side (scales are log-uniform from MIN_SIZE to it).
    cfg.DATA.SHAPES.MAX_SIZE_FRACTION = 0.85
    # Appearance: "cluttered" (textures, distractor lines) or "clean" (flat colours; see data/synthetic.py).
    cfg.DATA.SHAPES.STYLE = "cluttered"

    cfg.DATA.CUSTOM = CN()
    # COCO instances json of the fully-labeled images (masks); its categories are the dataset's.
    cfg.DATA.CUSTOM.FULL_JSON = ""
    # Point-label json of the clicked images (docs/DATA.md; e.g. from datasets/import_points.py).
    cfg.DATA.CUSTOM.POINTS_JSON = ""
    # Folder the file_name of both jsons (and of VAL_JSON / POINTS_GT_JSON) are relative to.
    cfg.DATA.CUSTOM.IMAGE_ROOT = ""
    # Optional COCO json with masks: teacher and students are evaluated on it ("" = not evaluated). With
    # TEST_JSON it is the validation set (for choosing settings) and the model rows are TEST_JSON's.
    cfg.DATA.CUSTOM.VAL_JSON = ""
    # Optional COCO json with masks of held-out images for reporting: the model rows ("" = VAL_JSON's).
    cfg.DATA.CUSTOM.TEST_JSON = ""
    # Optional COCO json with the true masks of (some of) the clicked images, matched by file_name and by
    # the mask under each click: pseudo-label quality rows only ("" = those rows are skipped).
    cfg.DATA.CUSTOM.POINTS_GT_JSON = ""
    # Optional COCO json with the true masks of every training image, full + clicked: enables the full_100 row.
    cfg.DATA.CUSTOM.TRAIN_ALL_JSON = ""
    # Choose the input scale and tiles from FULL_JSON's instance sizes (pipeline/scale.py) for the teacher,
    # its exports, the students and the 100% model; a node whose OPTS set INPUT sizes or tiles keeps those.
    cfg.DATA.CUSTOM.AUTO_SCALE = True

    cfg.LABELS = CN()
    # labels.json (DATA.KIND custom): a click without a pseudo-label gets a disk of this radius (pixels,
    # original image) around it, clipped to the image, flagged "wssis_flag": "fallback".
    cfg.LABELS.FALLBACK_RADIUS = 6.0

    cfg.REVIEW = CN()
    # The review stage (after labels; wssis_d2/review, docs/PIPELINE.md "Review"): per click flags and a risk,
    # per image orphans (likely missed clicks) and a review rank, in OUTPUT_DIR/review/.
    cfg.REVIEW.ENABLED = False
    # The click-free teacher pass keeps detections from this score on (review/plain_<score>.json).
    cfg.REVIEW.PASS_SCORE = 0.1
    # Orphans: detections of that pass with score >= this (also what "confident detections" per image count)
    # that belong to no click, one per object (review/signals.find_orphans). 0.2 with CLICK_IOU 0.2: the best
    # F2 (recall counted twice) of the missed-click test on the shapes demo (docs/RESULTS.md "Review").
    cfg.REVIEW.ORPHAN_SCORE = 0.2
    # A detection belongs to a click it holds when their IoU is >= CLICK_IOU, or when ORPHAN_IOU of it lies
    # inside a click's mask.
    cfg.REVIEW.CLICK_IOU = 0.2
    cfg.REVIEW.ORPHAN_IOU = 0.5
    # An image's risk counts an orphan as ORPHAN_WEIGHT x its score.
    cfg.REVIEW.ORPHAN_WEIGHT = 0.5
    # Flag thresholds: overlap (intersection / smaller mask) with another click's mask; |z| of log area vs the
    # class's full labels; teacher score below; IoU teacher vs MaskRefineNet mask below; IoU with the best
    # click-free detection holding the click below; mask pixels on an image / tile border per sqrt(area)
    # (review/risk.py).
    cfg.REVIEW.OVERLAP = 0.5
    cfg.REVIEW.AREA_Z = 2.0
    cfg.REVIEW.LOW_SCORE = 0.3
    cfg.REVIEW.MRN_IOU = 0.5
    cfg.REVIEW.PLAIN_IOU = 0.5
    cfg.REVIEW.BORDER_CUT = 0.25
    # Risk = sigmoid(BIAS + sum of WEIGHTS x flag strengths), weights in review.risk.FLAGS order: fallback,
    # outside, overlap, two_clicks, area, low_score, mrn_disagree, image_border, tile_border, plain_disagree,
    # no_detection (fitted on the shapes demo; review.json measured.suggested_weights refits them on a scored run).
    cfg.REVIEW.WEIGHTS = list(DEFAULT_WEIGHTS)
    cfg.REVIEW.BIAS = DEFAULT_BIAS
    # With true masks of the clicked images: a mask is bad when its IoU with its true mask is below this.
    cfg.REVIEW.BAD_IOU = 0.5
    # Missed-click test: this share of the clicks is removed (seeded) from a copy and the orphans searched
    # again; review.json reports how many come back (0: no test). The review itself uses every click.
    cfg.REVIEW.DROP_CLICKS = 0.05
    cfg.REVIEW.DROP_SEED = 0
    # Overlays of this many top-ranked images (OUTPUT_DIR/review/overlays).
    cfg.REVIEW.OVERLAYS = 8

    cfg.DATASETS = CN()
    # Registered names: fully-labeled images, their point-labeled complement, the true masks of the point
    # images (pseudo-label quality only), all training images with masks (the 100% model), validation set.
    cfg.DATASETS.FULL = "wssis_shapes_train_5p_s1_full"
    cfg.DATASETS.POINTS = "wssis_shapes_train_5p_s1_points"
    cfg.DATASETS.POINTS_GT = "wssis_shapes_train_5p_s1_points_gt"
    cfg.DATASETS.TRAIN_ALL = "wssis_shapes_train"
    cfg.DATASETS.TEST = "wssis_shapes_val"
    # Optional validation set for choosing settings: models are evaluated on it too (results.json
    # "models_val"); the model rows are DATASETS.TEST's ("" = no separate validation set).
    cfg.DATASETS.VAL = ""

    # Teacher: SOLOv2 trained on DATASETS.FULL only.
    cfg.TEACHER = _train_node("configs/CPU/SOLOv2_shapes.yaml")

    cfg.PSEUDO = CN()
    # Overrides of the teacher config for the pseudo-label exports (e.g. MODEL.WSSIS.MAX_PER_IMAGE 200).
    cfg.PSEUDO.OPTS = []
    # Score thresholds of the SSIS baseline ("+unlabeled", mode threshold), one export each (paper: 0.1 and
    # 0.5); the "threshold" row and the student_threshold model take the best by pseudo-label AP.
    cfg.PSEUDO.THRESHOLDS = [0.1, 0.3, 0.5]
    # Levels exported in fixed mode; the "fixed_best" row is the one with the highest AP (then mean IoU).
    cfg.PSEUDO.FIXED_LEVELS = [0, 1, 2, 3, 4]
    # Click round: a second teacher (stage teacher_clicks, TEACHER node) trained on the full masks plus the first
    # teacher's adaptive pseudo-labels that hold their click; the adaptive pseudo-labels then come from it.
    cfg.PSEUDO.CLICK_ROUND = False

    # MaskRefineNet: data from the teacher on the FULL images, training, refinement of the adaptive labels.
    cfg.MRN = _train_node("configs/MRN/MRN_R18_cpu.yaml")
    # Decoding of the teacher's predictions on the full images (METHOD.md section 4): "oracle_size" (the size oracle, as
    # published) or "adaptive".
    cfg.MRN.DATA_MODE = "oracle_size"
    # Teacher checkpoints giving MRN training data, as fractions of the teacher's schedule (1.0 =
    # model_final.pth): intermediate ones, so that the coarse masks are as imperfect as those MRN refines
    # (METHOD.md section 4; the paper's 5% run: 15k and 25k of 30k). Each is saved whatever the teacher's
    # CHECKPOINT_PERIOD.
    cfg.MRN.TEACHER_CHECKPOINTS = [0.5, 0.83]
    # Fraction of the full images held out to evaluate the MRN (0: none).
    cfg.MRN.VAL_FRACTION = 0.1
    # Fewer MRN training samples from the teacher than this (few full objects, a weak teacher): MRN.FEW_SAMPLES.
    cfg.MRN.MIN_SAMPLES = 20
    # Then: "synthetic" (top up to MIN_SAMPLES with the full masks corrupted, mrn/synthetic.py) or "skip" (no
    # MRN: the adaptive pseudo-labels go on unrefined). No full mask at all: skipped either way.
    cfg.MRN.FEW_SAMPLES = "synthetic"

    # Students: SOLOv2 on DATASETS.FULL + pseudo-labels (threshold / adaptive / adaptive + MRN).
    cfg.STUDENT = _train_node("configs/CPU/SOLOv2_shapes.yaml")
    # The 100% model: SOLOv2 on DATASETS.TRAIN_ALL. CONFIG "" = STUDENT.CONFIG; MAX_ITER 0 and STEPS []
    # = STUDENT's; OPTS are added after STUDENT.OPTS.
    cfg.FULL_100 = _train_node("")

    cfg.ROWS = CN()
    # Rows to fill (a subset of PSEUDO_ROWS / MODEL_ROWS); the stages they need run, the others are null.
    cfg.ROWS.PSEUDO_LABELS = list(PSEUDO_ROWS)
    cfg.ROWS.MODELS = list(MODEL_ROWS)
    return cfg


def node_values(pcfg, node: str):
    """(config file, MAX_ITER, STEPS, OPTS) of a training node; FULL_100 falls back on STUDENT."""
    n = pcfg[node]
    if node != "FULL_100":
        return n.CONFIG, n.MAX_ITER, list(n.STEPS), list(n.OPTS)
    s = pcfg.STUDENT
    return (n.CONFIG or s.CONFIG, n.MAX_ITER or s.MAX_ITER, list(n.STEPS or s.STEPS),
            list(s.OPTS) + list(n.OPTS))


def resolve_path(path):
    """``path`` as given when it exists (relative to the working directory), else relative to the
    repository root; absolute in both cases."""
    if not path or os.path.isabs(path) or os.path.exists(path):
        return os.path.abspath(path) if path else path
    candidate = os.path.join(REPO_ROOT, path)
    return candidate if os.path.exists(candidate) else os.path.abspath(path)


def _check(cfg):
    for key, allowed in (("PSEUDO_LABELS", PSEUDO_ROWS), ("MODELS", MODEL_ROWS)):
        unknown = [r for r in cfg.ROWS[key] if r not in allowed]
        if unknown:
            raise ValueError(f"ROWS.{key}: unknown rows {unknown}; choose from {list(allowed)}")
    if cfg.DATA.KIND not in ("shapes", "coco", "custom"):
        raise ValueError(f"DATA.KIND must be 'shapes', 'coco' or 'custom', got {cfg.DATA.KIND!r}")
    if cfg.DATA.KIND == "custom":
        for key in ("FULL_JSON", "POINTS_JSON", "IMAGE_ROOT"):
            if not cfg.DATA.CUSTOM[key]:
                raise ValueError(f"DATA.KIND custom needs DATA.CUSTOM.{key}")
    if cfg.MRN.DATA_MODE not in ("oracle_size", "adaptive"):
        raise ValueError(f"MRN.DATA_MODE must be 'oracle_size' or 'adaptive', got {cfg.MRN.DATA_MODE!r}")
    if cfg.MRN.FEW_SAMPLES not in ("synthetic", "skip"):
        raise ValueError(f"MRN.FEW_SAMPLES must be 'synthetic' or 'skip', got {cfg.MRN.FEW_SAMPLES!r}")
    if not cfg.MRN.TEACHER_CHECKPOINTS or any(not 0 < f <= 1 for f in cfg.MRN.TEACHER_CHECKPOINTS):
        raise ValueError(f"MRN.TEACHER_CHECKPOINTS must be fractions in (0, 1], got {cfg.MRN.TEACHER_CHECKPOINTS}")
    for node in ("TEACHER", "MRN", "STUDENT", "FULL_100"):
        if len(cfg[node].OPTS) % 2:
            raise ValueError(f"{node}.OPTS must be KEY VALUE pairs, got {cfg[node].OPTS}")
    if len(cfg.PSEUDO.OPTS) % 2:
        raise ValueError(f"PSEUDO.OPTS must be KEY VALUE pairs, got {cfg.PSEUDO.OPTS}")


def load_pipeline_cfg(config_file=None, opts=(), output_dir=None):
    """Defaults <- ``config_file`` <- ``opts`` (KEY VALUE ...) <- ``output_dir``; "{OUTPUT_DIR}" expanded,
    paths made absolute, checked, frozen.

    Returns:
        CfgNode
    """
    cfg = get_pipeline_cfg()
    if config_file:
        cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    if output_dir:
        cfg.OUTPUT_DIR = output_dir
    cfg.OUTPUT_DIR = os.path.abspath(cfg.OUTPUT_DIR)
    root = cfg.DATA.ROOT.replace("{OUTPUT_DIR}", cfg.OUTPUT_DIR)
    cfg.DATA.ROOT = os.path.abspath(root or os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets")))
    for node in ("TEACHER", "MRN", "STUDENT", "FULL_100"):
        cfg[node].CONFIG = resolve_path(cfg[node].CONFIG)
    if cfg.DATA.KIND == "custom":
        for key in ("FULL_JSON", "POINTS_JSON", "IMAGE_ROOT", "VAL_JSON", "TEST_JSON", "POINTS_GT_JSON",
                    "TRAIN_ALL_JSON"):
            value = cfg.DATA.CUSTOM[key].replace("{OUTPUT_DIR}", cfg.OUTPUT_DIR)
            cfg.DATA.CUSTOM[key] = os.path.abspath(value) if value else ""
        c = cfg.DATA.CUSTOM
        cfg.DATASETS.FULL, cfg.DATASETS.POINTS = CUSTOM_NAMES["FULL"], CUSTOM_NAMES["POINTS"]
        cfg.DATASETS.POINTS_GT = CUSTOM_NAMES["POINTS_GT"] if c.POINTS_GT_JSON else ""
        cfg.DATASETS.TEST = CUSTOM_NAMES["TEST"] if c.VAL_JSON or c.TEST_JSON else ""
        cfg.DATASETS.VAL = CUSTOM_NAMES["VAL"] if c.VAL_JSON and c.TEST_JSON else ""
        cfg.DATASETS.TRAIN_ALL = CUSTOM_NAMES["TRAIN_ALL"] if c.TRAIN_ALL_JSON else ""
    _check(cfg)
    cfg.freeze()
    return cfg
