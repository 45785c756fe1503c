"""Command line of the pipeline.

    python -m wssis_d2.pipeline --config-file configs/pipeline/shapes_demo.yaml [--num-gpus N]
        [--output-dir DIR] [--dry-run] [--seeds N] [KEY VALUE ...]

KEY VALUE pairs override the pipeline config (e.g. ``TEACHER.MAX_ITER 500 ROWS.MODELS "['teacher']"``).
Finished stages are skipped; interrupted ones resume. Results: ``<OUTPUT_DIR>/results.md`` and
``results.json``. ``--seeds N`` runs the profile N times (SEED and DATA.SPLIT_SEED + 0..N-1, in
``<OUTPUT_DIR>/seed_<k>``) and writes mean +- std of every row to ``<OUTPUT_DIR>/results_seeds.md``.
See docs/PIPELINE.md.
"""
import argparse

from .config import load_pipeline_cfg
from .run import run_pipeline, stage_status
from .seeds import run_seeds
from .stages import stage_logging


def get_parser():
    p = argparse.ArgumentParser(prog="python -m wssis_d2.pipeline", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, help="pipeline config (configs/pipeline/*.yaml)")
    p.add_argument("--num-gpus", type=int, default=1, help="processes (GPUs) per model stage")
    p.add_argument("--dist-url", default="auto", help="detectron2 launch rendezvous url")
    p.add_argument("--output-dir", default=None, help="overrides OUTPUT_DIR")
    p.add_argument("--dry-run", action="store_true", help="print the stages and their status, run nothing")
    p.add_argument("--seeds", type=int, default=1, help="runs with SEED / DATA.SPLIT_SEED + 0..N-1; mean +- std")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="pipeline config overrides KEY VALUE ...")
    return p


def main(argv=None):
    args = get_parser().parse_args(argv)
    opts = args.opts[1:] if args.opts and args.opts[0] == "--" else args.opts
    pcfg = load_pipeline_cfg(args.config_file, opts, output_dir=args.output_dir)
    if args.dry_run:
        for stage, status, folder in stage_status(pcfg):
            print(f"{stage:22s} {status:8s} {folder}")
        return None
    with stage_logging(None):
        if args.seeds > 1:
            out = run_seeds(pcfg, args.seeds, args.config_file, opts, num_gpus=args.num_gpus, dist_url=args.dist_url)
            print(out["markdown"])
            return out
        out = run_pipeline(pcfg, num_gpus=args.num_gpus, dist_url=args.dist_url, config_file=args.config_file)
    print(out["results"]["markdown"])
    return out

