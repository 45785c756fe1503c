#!/usr/bin/env python
"""Benchmark point-guided pseudo-labeling (not a test).

Three measurements, all on one CPU/GPU process with random inputs:

1. Throughput of the model in APS mode (10 and 100 points per image) against plain inference, same
   model, same images (images / s, best of ``--repeats`` passes). Plain inference is measured in two
   regimes because its cost depends on how many cells pass the class threshold: ``light`` (class
   probabilities ~0.05: no candidate, the heads alone) and ``loaded`` (probabilities ~0.5: NMS_PRE = 500
   candidates and Matrix NMS, as with a trained teacher on crowded images). ``aps_vs_plain`` is the
   ratio at 100 points against the light regime (the stricter one).
2. The batched point filter against the per-point loop at 100 points (functions of
   ``tools/benchmark_point_filter.py``: C = 80, E = 256, stock grids, ``--filter-feat`` mask features).
3. Tiles (``INPUT.TILE``): one ``--tiled-size`` image (default 1024 px) with 50 and 500 clicks, decoded
   whole and on tiles of ``--tile`` px (default 256, overlap 32), model + conversion to export
   annotations: seconds per image and per click (best of ``--repeats``). ``tiled_500_vs_50`` shows
   that the tiled cost grows with the image, not with clicks x tiles.
4. Peak resident memory of a complete export (model + ``PseudoLabelExporter``, 10 points per image,
   tiny images fed directly) over 100 and over 1000 images, each in a fresh subprocess: the peak RSS
   during the export itself (``VmHWM`` reset after the model is built and warmed up, Linux) and the
   whole process's ``ru_maxrss``. ``rss_1000_vs_100`` is the ratio of the former (the latter where the
   reset is not possible).

    python tools/benchmark_pseudo_labels.py [--size 256] [--images 8] [--rss-images 100 1000] [--json out.json]

``--json`` writes {"aps_vs_plain", "batched_vs_loop", "tiled_500_vs_50", "rss_1000_vs_100", "details"}. Timings on a shared
machine are noisy: compare numbers from one run only.
"""
import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import torch

import wssis_d2  # noqa: F401  (first: it hides fvcore's torch.jit.script FutureWarning)

from detectron2.config import get_cfg
from detectron2.data import MetadataCatalog
from detectron2.modeling import build_model
from detectron2.structures import Instances

from wssis_d2 import add_wssis_config
from wssis_d2.data.json_io import write_json_atomic
from wssis_d2.evaluation import PseudoLabelExporter
from wssis_d2.pseudo import read_json_info

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(ROOT, "configs", "pseudo", "SOLOv2_tiny_APS.yaml")


def build(config, opts=()):
    cfg = get_cfg()
    add_wssis_config(cfg)
    cfg.merge_from_file(config)
    cfg.merge_from_list(list(opts))
    cfg.MODEL.WEIGHTS = ""
    torch.manual_seed(0)
    return cfg, build_model(cfg).eval()  # random kernels: masks cover about half of the image


def set_class_prob(model, prob):
    with torch.no_grad():
        model.ins_head.cate_pred.bias.fill_(float(torch.logit(torch.tensor(prob))))


def make_image(size, num_points, num_classes, seed):
    g = torch.Generator().manual_seed(seed)
    x = {"image": torch.randint(0, 255, (3, size, size), dtype=torch.uint8, generator=g), "height": size,
         "width": size, "image_id": seed}
    if num_points is not None:
        inst = Instances((size, size))
        inst.gt_points = torch.rand(num_points, 2, generator=g) * size
        inst.gt_classes = torch.randint(0, num_classes, (num_points,), generator=g)
        inst.gt_point_valid = torch.ones(num_points, dtype=torch.bool)
        inst.gt_point_ids = torch.arange(num_points)
        x["point_instances"] = inst
    return x


def throughput(model, variants, repeats):
    """Best-of-``repeats`` images / s of each variant {name: inputs} (one image per call). The variants
    are timed in turn within each round, so that load changes on a shared machine hit them alike."""
    best = {name: float("inf") for name in variants}
    with torch.no_grad():
        for inputs in variants.values():
            model([inputs[0]])  # warm-up
        for _ in range(repeats):
            for name, inputs in variants.items():
                start = time.perf_counter()
                for x in inputs:
                    model([x])
                best[name] = min(best[name], time.perf_counter() - start)
    return {name: len(variants[name]) / t for name, t in best.items()}


def bench_throughput(args, model, num_classes):
    rows = {}
    variants = {m: [make_image(args.size, m, num_classes, i) for i in range(args.images)] for m in (None, 10, 100)}
    for regime, prob in (("light", 0.05), ("loaded", 0.5)):
        set_class_prob(model, prob)
        speed = throughput(model, variants, args.repeats)
        plain = speed[None]
        row = {"plain_img_s": plain}
        for m in (10, 100):
            row[f"aps{m}_img_s"] = speed[m]
            row[f"aps{m}_vs_plain"] = speed[m] / plain
        rows[regime] = row
        print(f"[{regime:6s}] plain {plain:7.2f} img/s   APS@10 {row['aps10_img_s']:7.2f} img/s "
              f"(x{row['aps10_vs_plain']:.2f})   APS@100 {row['aps100_img_s']:7.2f} img/s "
              f"(x{row['aps100_vs_plain']:.2f})")
    return rows


def bench_filter(args):
    spec = importlib.util.spec_from_file_location("benchmark_point_filter",
                                                  os.path.join(ROOT, "tools", "benchmark_point_filter.py"))
    bpf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bpf)
    from wssis_d2.modeling.point_filter import select_point_masks

    cate, kern, feats, pts, classes, input_hw = bpf.make_inputs(100, 80, 256, tuple(args.filter_feat), seed=100)
    run_args = (cate, kern, feats, pts, classes, input_hw, bpf.STRIDES)
    select_point_masks(*run_args)
    t_batched, _ = bpf.timed(lambda: select_point_masks(*run_args), args.repeats)
    t_loop, _ = bpf.timed(lambda: bpf.reference_select_point_masks(*run_args), 1)
    print(f"[filter] 100 points, feat {tuple(args.filter_feat)}: batched {1e3 * t_batched:.1f} ms, "
          f"loop {1e3 * t_loop:.1f} ms, x{t_loop / t_batched:.1f}")
    return {"batched_s": t_batched, "loop_s": t_loop, "speedup": t_loop / t_batched, "feat": args.filter_feat}


def bench_tiled(args):
    """Seconds per image and per click, whole vs tiled (module docstring, item 3)."""
    from wssis_d2.evaluation.pseudo_labels import instances_to_pseudo_annotations

    rows = {}
    for name, opts in (("untiled", []), ("tiled", ["INPUT.TILE.SIZE", args.tile, "INPUT.TILE.OVERLAP", 32.0])):
        cfg, model = build(args.config, list(args.opts) + opts)
        ids = {c: c + 1 for c in range(cfg.MODEL.SOLOV2.NUM_CLASSES)}
        for clicks in (50, 500):
            x = make_image(args.tiled_size, clicks, cfg.MODEL.SOLOV2.NUM_CLASSES, 7)
            best, kept = float("inf"), 0
            with torch.no_grad():
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    kept = len(instances_to_pseudo_annotations(model([x])[0]["instances"], 1, ids))
                    best = min(best, time.perf_counter() - start)
            rows[f"{name}_{clicks}"] = {"s_per_image": best, "ms_per_click": 1e3 * best / clicks, "annotations": kept}
            print(f"[tiles] {args.tiled_size} px, {clicks:3d} clicks, {name:7s}: {best:6.2f} s/image, "
                  f"{1e3 * best / clicks:6.1f} ms/click, {kept} annotations")
    return rows


def rss_child(args):
    """Export ``args.rss_child`` images end to end in this process; print peak RSS (MiB) as json."""
    cfg, model = build(args.config, args.opts)
    set_class_prob(model, 0.05)
    num_classes = cfg.MODEL.SOLOV2.NUM_CLASSES
    with tempfile.TemporaryDirectory() as tmp:
        name = "benchmark_pseudo_rss"
        images = [{"id": i, "file_name": f"{i}.jpg", "height": args.rss_size, "width": args.rss_size}
                  for i in range(args.rss_child)]
        categories = [{"id": 2 * c + 1, "name": f"c{c}"} for c in range(num_classes)]
        src = os.path.join(tmp, "points.json")
        with open(src, "w") as f:
            json.dump({"images": images, "categories": categories, "annotations": []}, f)
        MetadataCatalog.get(name).set(json_file=src, image_root=tmp,
                                      thing_dataset_id_to_contiguous_id={2 * c + 1: c for c in range(num_classes)})
        out = os.path.join(tmp, "pseudo.json")
        exporter = PseudoLabelExporter(name, out, mode="adaptive")
        exporter.reset()
        with torch.no_grad():
            model([make_image(args.rss_size, 10, num_classes, 0)])  # warm-up: allocator, kernels
        before = _status_kib("VmRSS")
        reset = _reset_peak_rss()
        start = time.perf_counter()
        with torch.no_grad():
            for i in range(args.rss_child):
                x = make_image(args.rss_size, 10, num_classes, i)
                exporter.process([x], model([x]))
        exporter.evaluate()
        elapsed = time.perf_counter() - start
        export_peak = _status_kib("VmHWM") if reset else None  # before reading the result back
        size = os.path.getsize(out)
        num_anns = read_json_info(out)["num_annotations"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"images": args.rss_child, "peak_rss_mib": peak, "seconds": elapsed, "json_bytes": size,
                      "annotations": num_anns, "rss_before_export_mib": before / 1024 if before else None,
                      "export_peak_rss_mib": export_peak / 1024 if export_peak else None}))


def _status_kib(key):
    """A ``/proc/self/status`` memory field in KiB (Linux), or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss():
    """Reset the peak RSS (VmHWM) to the current RSS (Linux >= 4.0); False where not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def bench_rss(args):
    rows = []
    for n in args.rss_images:
        cmd = [sys.executable, os.path.abspath(__file__), "--rss-child", str(n), "--rss-size", str(args.rss_size),
               "--threads", str(args.threads), "--config", args.config] + (["--opts", *args.opts] if args.opts else [])
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        row = json.loads(out.strip().splitlines()[-1])
        rows.append(row)
        export = row["export_peak_rss_mib"]
        print(f"[rss] {n:5d} images: process peak RSS {row['peak_rss_mib']:.1f} MiB, during the export "
              f"{'-' if export is None else f'{export:.1f}'} MiB (RSS before it {row['rss_before_export_mib']:.1f} "
              f"MiB), {row['annotations']} pseudo-labels, json {row['json_bytes'] / 2**20:.2f} MiB, "
              f"{row['seconds']:.1f} s")
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--opts", nargs="*", default=[], help="config overrides KEY VALUE ...")
    parser.add_argument("--size", type=int, default=256, help="image side for the throughput runs")
    parser.add_argument("--images", type=int, default=8, help="images per throughput pass")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--filter-feat", type=int, nargs=2, default=[200, 200], metavar=("HF", "WF"))
    parser.add_argument("--rss-images", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--rss-size", type=int, default=64, help="image side of the memory runs")
    parser.add_argument("--tiled-size", type=int, default=1024, help="image side of the tile runs")
    parser.add_argument("--tile", type=int, default=256, help="tile side of the tile runs")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--skip", nargs="*", default=[], choices=["throughput", "filter", "tiled", "rss"])
    parser.add_argument("--json", default=None)
    parser.add_argument("--rss-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.rss_child is not None:
        return rss_child(args)

    details = {"threads": args.threads, "size": args.size, "images": args.images, "config": args.config}
    print(f"config {os.path.relpath(args.config, ROOT)}, {args.size} px, threads {args.threads}")
    result = {"aps_vs_plain": None, "batched_vs_loop": None, "tiled_500_vs_50": None, "rss_1000_vs_100": None}
    if "throughput" not in args.skip:
        cfg, model = build(args.config, args.opts)
        details["throughput"] = bench_throughput(args, model, cfg.MODEL.SOLOV2.NUM_CLASSES)
        result["aps_vs_plain"] = details["throughput"]["light"]["aps100_vs_plain"]
    if "filter" not in args.skip:
        details["filter"] = bench_filter(args)
        result["batched_vs_loop"] = details["filter"]["speedup"]
    if "tiled" not in args.skip:
        details["tiled"] = bench_tiled(args)
        t = details["tiled"]
        result["tiled_500_vs_50"] = t["tiled_500"]["s_per_image"] / t["tiled_50"]["s_per_image"]
        print(f"[tiles] tiled 500 vs 50 clicks: x{result['tiled_500_vs_50']:.2f} time for x10 clicks; tiled vs "
              f"untiled at 500 clicks: x{t['tiled_500']['s_per_image'] / t['untiled_500']['s_per_image']:.2f}")
    if "rss" not in args.skip:
        rows = bench_rss(args)
        details["rss"] = rows
        key = "export_peak_rss_mib" if rows[0]["export_peak_rss_mib"] else "peak_rss_mib"
        result["rss_1000_vs_100"] = rows[-1][key] / rows[0][key]
        print(f"[rss] {rows[-1]['images']} vs {rows[0]['images']} images: x{result['rss_1000_vs_100']:.3f}")
    result["details"] = details
    if args.json:
        write_json_atomic(result, args.json, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
