"""``python -m wssis_d2.review --pipeline-dir output/X [--redo] [--num-gpus N] [KEY VALUE ...]``: the review
stage on a finished pipeline run (its ``pipeline_config.yaml``, ``REVIEW.ENABLED`` set, KEY VALUE overrides
after it), written as the pipeline writes it: ``<dir>/review/`` and its marker, so a later pipeline run over
the folder skips it. ``--redo``: run it again (the click-free pass is kept; its flags, risk and files are
remade, e.g. with other REVIEW.* values)."""
import argparse
import os

from ..pipeline.config import load_pipeline_cfg
from ..pipeline.data import register_datasets
from ..pipeline.run import run_stage
from ..pipeline.stage_table import plan_stages, stage_needs
from ..pipeline.stages import MARKER, StageRunner, stage_logging
from ..utils.errors import WSSISInputError, run_cli


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m wssis_d2.review", description=__doc__)
    p.add_argument("--pipeline-dir", required=True, help="OUTPUT_DIR of a pipeline run (holds pipeline_config.yaml)")
    p.add_argument("--redo", action="store_true", help="run the review again when it finished earlier")
    p.add_argument("--num-gpus", type=int, default=1, help="processes of the click-free pass")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="pipeline config overrides KEY VALUE ... (REVIEW.*)")
    args = p.parse_args(argv)
    config = os.path.join(args.pipeline_dir, "pipeline_config.yaml")
    if not os.path.isfile(config):
        raise WSSISInputError(f"{config} does not exist: --pipeline-dir must be the OUTPUT_DIR of a pipeline run")
    opts = args.opts[1:] if args.opts and args.opts[0] == "--" else args.opts
    pcfg = load_pipeline_cfg(config, list(opts) + ["REVIEW.ENABLED", True], output_dir=args.pipeline_dir)
    planned = plan_stages(pcfg)
    runner = StageRunner(pcfg.OUTPUT_DIR, num_gpus=args.num_gpus, num_threads=pcfg.NUM_THREADS,
                         default_config=pcfg.dump())
    with stage_logging(None):
        register_datasets(pcfg)
        missing = [s for s in stage_needs("review", planned) if runner.finished(s, log=False) is None]
        if missing:
            raise WSSISInputError(f"{args.pipeline_dir}: stages {missing} are not finished; the review reads them "
                                  f"(run the pipeline first)")
        marker = os.path.join(runner.stage_dir("review"), MARKER)
        if args.redo and os.path.isfile(marker):
            os.remove(marker)
        record = run_stage(runner, pcfg, "review", planned)
    for key in ("review_md", "review", "labels_review"):
        print(f"{key}: {record['outputs'].get(key)}")
    return record


if __name__ == "__main__":
    run_cli(main)  # one "error: ..." line for bad input (--traceback: all of it)
