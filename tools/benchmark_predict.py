#!/usr/bin/env python
"""Benchmark click-to-mask (``wssis_d2.PointPredictor``) against plain inference (not a test).

Same model, same images: generated shapes images of ``--size`` px (``wssis_d2.data.synthetic``), the
model of ``--config`` (random initialisation, seeded, unless ``--weights``). Plain inference is the model on
the mapped image (the predictor's mapper: same resize), without clicks; the predictor runs with 1, 10 and
100 clicks per image (uniform positions, random classes), one forward pass per image in every case. Beside
each, the model alone on the same mapped image and clicks (what the pseudo-label export runs): the
difference is the predictor's own cost (input checks, mapping, per-click assembly).
Printed: images / s and clicks / s, best of ``--repeats`` passes over ``--images`` images, the variants timed
in turn within each round (``benchmark_pseudo_labels.throughput``) so that load changes on a shared machine
hit them alike.

    python tools/benchmark_predict.py [--size 256] [--images 8] [--repeats 3] [--threads 1] [--json out.json]
        [--opts INPUT.TILE.SIZE 128 ...]
"""
import argparse
import importlib.util
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from detectron2.config import get_cfg  # noqa: E402

from wssis_d2 import PointPredictor, add_wssis_config  # noqa: E402
from wssis_d2.data.images import convert_image_format  # noqa: E402
from wssis_d2.data.json_io import write_json_atomic  # noqa: E402
from wssis_d2.data.synthetic import render_shapes_image  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(ROOT, "configs", "CPU", "SOLOv2_tiny.yaml")
CLICKS = (1, 10, 100)


def _throughput():
    spec = importlib.util.spec_from_file_location("benchmark_pseudo_labels",
                                                  os.path.join(ROOT, "tools", "benchmark_pseudo_labels.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.throughput


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=DEFAULT_CONFIG)
    p.add_argument("--weights", default="", help="default: random initialisation (seed 0)")
    p.add_argument("--opts", nargs="*", default=[], help="config overrides KEY VALUE ...")
    p.add_argument("--size", type=int, default=256, help="image side")
    p.add_argument("--images", type=int, default=8, help="images per pass")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = get_cfg()
    add_wssis_config(cfg)
    cfg.merge_from_file(args.config)
    cfg.merge_from_list(list(args.opts) + ["MODEL.WEIGHTS", args.weights])
    torch.manual_seed(0)
    predictor = PointPredictor(cfg)
    images = [convert_image_format(render_shapes_image(np.random.default_rng(i), args.size, args.size)[0], "BGR",
                                   predictor.input_format) for i in range(args.images)]
    rng = np.random.default_rng(0)
    size, num_classes = args.size, predictor.num_classes

    def plain(image):
        x = predictor.mapper.map_image({"height": size, "width": size}, image)
        return lambda: predictor.model([x])

    def clicked(image, n):
        pts, cls = rng.uniform(0, size, (n, 2)), rng.integers(0, num_classes, n)
        annos = [{"id": k, "point_coords": [[float(x), float(y)]], "point_labels": [1], "category_id": int(c)}
                 for k, ((x, y), c) in enumerate(zip(pts, cls))]
        x = predictor.mapper.map_image({"height": size, "width": size, "label_kind": "points", "annotations": annos},
                                       image)
        return {"run": lambda: predictor(image, pts, cls), "export": lambda: predictor.model([x])}

    variants = {"plain": [{"run": plain(im)} for im in images]}
    for n in CLICKS:
        calls = [clicked(im, n) for im in images]
        variants[n] = [{"run": c["run"]} for c in calls]
        variants[f"export_{n}"] = [{"run": c["export"]} for c in calls]
    speed = _throughput()(lambda batch: batch[0]["run"](), variants, args.repeats)
    rows = {"plain": {"img_s": speed["plain"]}}
    print(f"{os.path.relpath(args.config, ROOT)} {' '.join(args.opts)}, weights {args.weights or 'random'}, "
          f"{args.size} px, {args.images} images, threads {args.threads}, best of {args.repeats}")
    print(f"plain inference        {speed['plain']:7.2f} img/s")
    for n in CLICKS:
        export = speed[f"export_{n}"]
        rows[f"predict_{n}"] = {"img_s": speed[n], "clicks_s": speed[n] * n, "vs_plain": speed[n] / speed["plain"],
                                "export_decoding_img_s": export, "vs_export_decoding": speed[n] / export}
        print(f"predictor {n:3d} click{'s' if n > 1 else ' '}  {speed[n]:7.2f} img/s  {speed[n] * n:8.1f} clicks/s  "
              f"(x{speed[n] / speed['plain']:.2f} of plain; the model decoding these clicks as the export does: "
              f"{export:.2f} img/s, predictor x{speed[n] / export:.2f})")
    if args.json:
        write_json_atomic({"rows": rows, "size": args.size, "images": args.images, "threads": args.threads,
                           "config": args.config, "opts": args.opts, "weights": args.weights}, args.json, indent=2)
        print(f"wrote {args.json}")
    return rows


if __name__ == "__main__":
    main()
