#!/usr/bin/env python
"""The PointWSSIS demo (``make demo``): the demo pipeline profile on the embedded shapes dataset, its
results table, and overlays of the points and pseudo-masks.

    python tools/demo.py [--output-dir output/demo] [--config-file configs/pipeline/shapes_demo.yaml]
        [--overlays 4] [KEY VALUE ...]

Runs (or resumes: finished stages are skipped) ``python -m wssis_d2.pipeline`` with that profile, prints
``results.md`` and the model rows beside the paper's (COCO 5%), and writes

- ``<output-dir>/comparison.png``: ``--overlays`` point images side by side: the points, the threshold
  baseline's masks, the adaptive pseudo-labels, the refined ones and the true masks (the columns the
  profile filled);
- ``<output-dir>/models_ap.png``: a bar plot of each model row's AP / the 100% model's (ours and the paper's);
- ``<output-dir>/overlays/<kind>/*.png``: one picture per image and kind, at full size.

5-11 min on 2 CPU cores (README "Quick start": it depends on how fast the machine is that day).
"""
import argparse
import logging
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from wssis_d2.data.json_io import load_json  # noqa: E402
from wssis_d2.pipeline import load_pipeline_cfg, run_pipeline  # noqa: E402
from wssis_d2.pipeline.data import dataset_json  # noqa: E402
from wssis_d2.pipeline.demo_figures import draw_comparison, paper_table, plot_model_rows  # noqa: E402
from wssis_d2.pipeline.stage_table import main_output  # noqa: E402
from wssis_d2.pipeline.stages import stage_logging  # noqa: E402
from wssis_d2.utils.visualize import render_coco_json  # noqa: E402
from wssis_d2.utils.errors import run_cli  # noqa: E402

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "pipeline",
                              "shapes_demo.yaml")
# Pseudo-label stages drawn when the profile ran them.
OVERLAY_STAGES = ("pseudo_threshold", "pseudo_adaptive", "pseudo_adaptive_mrn", "pseudo_oracle_size")
# Columns of comparison.png: (title, stage); "points" / "true masks" are the point labels / their true masks.
COMPARISON = (("points", None), ("threshold (no points)", "pseudo_threshold"),
              ("adaptive pseudo-labels", "pseudo_adaptive"), ("adaptive + MRN", "pseudo_adaptive_mrn"),
              ("true masks", None))


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
                drawn[kind] = render_coco_json(main_output(record, stage),
                                               os.path.join(overlay_dir, kind), max_images=args.overlays)
        logger.info(f"Overlays: {', '.join(f'{k} ({len(v)})' for k, v in drawn.items())} in {overlay_dir}")
        columns = []
        for title, stage in COMPARISON:
            if stage is None:
                name = pcfg.DATASETS.POINTS if title == "points" else pcfg.DATASETS.POINTS_GT
                columns.append((title, dataset_json(name)))
            elif out["records"].get(stage):
                columns.append((title, main_output(out["records"][stage], stage)))
        figures = {"comparison": draw_comparison(dataset_json(pcfg.DATASETS.POINTS), columns,
                                                 os.path.join(pcfg.OUTPUT_DIR, "comparison.png"),
                                                 num_images=args.overlays)}
        results = load_json(out["results"]["json"])
        if any(v is not None for v in results["models"].values()):
            figures["models_ap"] = plot_model_rows(results["models"], os.path.join(pcfg.OUTPUT_DIR, "models_ap.png"),
                                                   percent=pcfg.DATA.PERCENT)
        logger.info(f"Figures: {', '.join(figures.values())}")
    print(out["results"]["markdown"])
    print("Model rows beside the published ones (METHOD.md section 7; COCO test-dev, ResNet-101); shapes and "
          "COCO AP are not one scale, the ratios to each 100% model are what compares:\n")
    print(paper_table(results["models"], pcfg.DATA.PERCENT) + "\n")
    print(f"Demo finished in {time.perf_counter() - t0:.0f} s. Results: {out['results']['md']}, "
          f"{out['results']['json']}; figures: {', '.join(figures.values())}; "
          f"overlays: {overlay_dir}/{{{','.join(drawn)}}}/")
    out["figures"] = figures
    return out


if __name__ == "__main__":
    run_cli(main)  # one "error: ..." line for bad input (--traceback: all of it)
