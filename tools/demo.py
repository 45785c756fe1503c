#!/usr/bin/env python
"""The PointWSSIS demo (``make demo``): the demo pipeline profile on the embedded shapes dataset, its
results table, and overlays of the points and pseudo-masks.

    python tools/demo.py [--output-dir output/demo] [--config-file configs/pipeline/shapes_demo.yaml]
        [--overlays 4] [KEY VALUE ...]

Runs (or resumes: finished stages are skipped) ``python -m wssis_d2.pipeline`` with that profile, prints
``results.md`` and writes ``<output-dir>/overlays/<kind>/*.png``: the point labels, and the pseudo-labels
(masks with their points) of each pseudo-label row the profile filled. ~10 min on 2 CPU cores.
"""
import argparse
import logging
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from wssis_d2.pipeline import load_pipeline_cfg, run_pipeline  # noqa: E402
from wssis_d2.pipeline.data import dataset_json  # noqa: E402
from wssis_d2.pipeline.stages import stage_logging  # noqa: E402
from wssis_d2.pipeline.visualize import render_coco_json  # noqa: E402

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "pipeline",
                              "shapes_demo.yaml")
# Pseudo-label stages drawn when the profile ran them.
OVERLAY_STAGES = ("pseudo_threshold", "pseudo_adaptive", "pseudo_adaptive_mrn", "pseudo_oracle")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", default=DEFAULT_CONFIG, help="pipeline profile")
    p.add_argument("--output-dir", default=None, help="overrides the profile's OUTPUT_DIR")
    p.add_argument("--overlays", type=int, default=4, help="images drawn per kind")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="pipeline config overrides KEY VALUE ...")
    args = p.parse_args(argv)
    pcfg = load_pipeline_cfg(args.config_file, args.opts, output_dir=args.output_dir)
    t0 = time.perf_counter()
    with stage_logging(None):
        logger = logging.getLogger("wssis_d2.demo")
        out = run_pipeline(pcfg, config_file=args.config_file)
        overlay_dir = os.path.join(pcfg.OUTPUT_DIR, "overlays")
        drawn = {"points": render_coco_json(dataset_json(pcfg.DATASETS.POINTS), os.path.join(overlay_dir, "points"),
                                            max_images=args.overlays)}
        for stage in OVERLAY_STAGES:
            record = out["records"].get(stage)
            if record:
                kind = stage[len("pseudo_"):]
                drawn[kind] = render_coco_json(next(iter(record["outputs"].values())),
                                               os.path.join(overlay_dir, kind), max_images=args.overlays)
        logger.info(f"Overlays: {', '.join(f'{k} ({len(v)})' for k, v in drawn.items())} in {overlay_dir}")
    print(out["results"]["markdown"])
    print(f"Demo finished in {time.perf_counter() - t0:.0f} s. Results: {out['results']['md']}, "
          f"{out['results']['json']}; overlays: {overlay_dir}/{{{','.join(drawn)}}}/")
    return out


if __name__ == "__main__":
    main()
