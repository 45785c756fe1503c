"""The PointWSSIS pipeline in one resumable command (docs/PIPELINE.md):

teacher -> pseudo-labels of the point images -> MaskRefineNet data, training and refinement -> students ->
evaluation, one folder per stage under OUTPUT_DIR with a completion marker, results.md / results.json.

    python -m wssis_d2.pipeline --config-file configs/pipeline/shapes_demo.yaml
"""
from .config import MODEL_ROWS, PSEUDO_ROWS, get_pipeline_cfg, load_pipeline_cfg
from .results import build_results, write_results
from .run import plan_stages, run_pipeline, stage_status
from .stages import MARKER, StageRunner, read_marker

__all__ = [
    "MARKER",
    "MODEL_ROWS",
    "PSEUDO_ROWS",
    "StageRunner",
    "build_results",
    "get_pipeline_cfg",
    "load_pipeline_cfg",
    "plan_stages",
    "read_marker",
    "run_pipeline",
    "stage_status",
    "write_results",
]
