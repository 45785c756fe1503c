#!/usr/bin/env python
"""Cost of tiled inference against the image area (issue 30; a benchmark, not a test).

Generated square images of 1024, 2048 and 4096 px with small discs (diameter 6-14 px) at one density:
``--objects`` (default 20,000) at 4096 px, i.e. ~1250 / 5000 / 20000. Tiles of 256 px (overlap 32) through
the tiny SOLOv2 of ``configs/pseudo/SOLOv2_tiny_APS.yaml`` with random weights. Two decodings, each size
and each decoding in a fresh process (clean peak memory):

- **plain**: ``TiledInference.decode_plain``: every tile through the backbone, heads and the plain decoder;
  random weights detect nothing, so the detections handed to the cross-tile merge are the generated
  objects' exact masks as each tile sees them (a perfect detector: every object seen by two or four tiles
  near seams is one merge candidate pair or more). The merge and the final masks are the code under test.
- **points**: ``TiledInference.decode_points`` with one click per object (its centre): every tile that
  holds a click through the model and the adaptive point decoder; the decoder's masks of random weights
  cover about half a tile, so each is replaced by the clicked object's own mask in that tile (masks of
  object size, as a trained teacher gives), then the export's RLEs (``CroppedMasks.to_rles``).

Masks stay cut to their boxes (``TiledInference(paste=False)``): (K, H, W) dense masks would be 335 GB for
20,000 objects at 4096 px. Per run: seconds of the decoding (model build and image generation excluded),
seconds of the merge (plain) or of the RLE encoding (points), the process's peak RSS (``ru_maxrss``) and the
peak RSS during the decoding above the RSS before it (``VmHWM`` reset, Linux), and the load average (the
machine may be shared). The table gives the ratios to the smallest image: linear cost means x4 and x16.

The children run with ``MALLOC_MMAP_THRESHOLD_=131072`` (``--default-malloc`` to leave glibc's default):
glibc's dynamic threshold otherwise moves each tile's freed temporaries (tens of MB) onto the heap, where
the small crops kept from every tile pin them, and the process keeps about 1.8 MB per tile that the code
no longer uses (measured: 651 instead of 174 MiB for plain decoding at 4096 px).

    nice -n 10 python tools/benchmark_large_images.py [--sizes 1024 2048 4096] [--repeats 2] [--json out.json]

Timings on a shared machine are noisy: one run, say so with the numbers.
"""
import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools"))

import wssis_d2  # noqa: E402,F401  (first: it hides fvcore's torch.jit.script FutureWarning)

from benchmark_pseudo_labels import _reset_peak_rss, _status_kib, build  # noqa: E402
from detectron2.structures import Boxes, Instances  # noqa: E402

from wssis_d2.data.json_io import write_json_atomic  # noqa: E402
from wssis_d2.modeling.postprocess import mask_boxes  # noqa: E402
from wssis_d2.modeling.tiling import best_tiles, tile_boxes  # noqa: E402

CONFIG = os.path.join(ROOT, "configs", "pseudo", "SOLOv2_tiny_APS.yaml")
TILE, OVERLAP = 256, 32


def make_scene(size, num, num_classes, seed=0):
    """``num`` discs on a ``size`` px image, one per cell of a jittered grid (few overlaps).

    Returns: image (3, size, size) uint8, centres (num, 2) float (x, y), radii (num,) float, classes (num,)."""
    import cv2

    rng = np.random.default_rng(seed)
    per_side = math.ceil(math.sqrt(num))
    cell = size / per_side
    cells = rng.permutation(per_side * per_side)[:num]
    radii = rng.uniform(3.0, 7.0, num)
    centres = np.stack([cells % per_side, cells // per_side], 1) * cell + cell / 2
    centres += rng.uniform(-1, 1, (num, 2)) * np.maximum(cell / 2 - radii - 1, 0)[:, None]
    img = np.full((size, size, 3), 40, np.uint8)
    for (cx, cy), r, col in zip(centres, radii, rng.integers(120, 255, (num, 3))):
        cv2.circle(img, (int(cx), int(cy)), int(r), tuple(int(v) for v in col), -1)
    return (torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))), torch.from_numpy(centres).float(),
            torch.from_numpy(radii).float(), torch.from_numpy(rng.integers(0, num_classes, num)))


def disc_masks(centres, radii, tile):
    """(K, th, tw) bool: discs (image pixel centres (x + 0.5, y + 0.5) within r of the centre) in ``tile``."""
    x0, y0, x1, y1 = tile
    xs = torch.arange(x0, x1, dtype=torch.float32) + 0.5
    ys = torch.arange(y0, y1, dtype=torch.float32) + 0.5
    dx = (xs[None, :] - centres[:, 0:1]) ** 2  # (K, tw)
    dy = (ys[None, :] - centres[:, 1:2]) ** 2  # (K, th)
    return dy[:, :, None] + dx[:, None, :] <= (radii ** 2)[:, None, None]


def visible(centres, radii, tile):
    x0, y0, x1, y1 = tile
    c, r = centres, radii
    return torch.nonzero((c[:, 0] + r > x0) & (c[:, 0] - r < x1) & (c[:, 1] + r > y0) & (c[:, 1] - r < y1)).squeeze(1)


def run_child(args):
    torch.set_num_threads(args.threads)
    cfg, model = build(CONFIG, ["INPUT.TILE.SIZE", TILE, "INPUT.TILE.OVERLAP", float(OVERLAP)])
    num = round(args.objects * (args.child_size / 4096) ** 2)
    image, centres, radii, classes = make_scene(args.child_size, num, cfg.MODEL.SOLOV2.NUM_CLASSES)
    size = args.child_size
    tiles = tile_boxes(size, size, TILE, OVERLAP)
    tiler = model.tiler
    tiler.paste = False  # masks stay cut to their boxes (module docstring)
    timing = {"part_s": 0.0}
    with torch.no_grad():
        model.forward_heads(model.preprocess_image([{"image": image[:, :TILE, :TILE]}]))  # warm-up
    before = _status_kib("VmRSS")
    reset = _reset_peak_rss()
    start = time.perf_counter()
    with torch.no_grad():
        if args.child == "plain":
            tile_iter = iter(tiles.tolist())

            def decode(heads):  # the real plain decoder runs; a perfect detector's masks go on
                model.plain_decoder(heads)
                tile = next(tile_iter)
                ids = visible(centres, radii, tile)
                masks = disc_masks(centres[ids], radii[ids], tile)
                present = masks.flatten(1).any(1)
                inst = Instances(heads.output_hw)
                inst.pred_masks = masks[present]
                inst.scores = torch.rand(int(present.sum()))
                inst.pred_classes = classes[ids][present]
                inst.pred_boxes = Boxes(mask_boxes(inst.pred_masks))
                timing["detections"] = timing.get("detections", 0) + len(inst)
                return inst

            combine = tiler._combine_image

            def timed_combine(*a, **k):
                t0 = time.perf_counter()
                out = combine(*a, **k)
                timing["part_s"] = time.perf_counter() - t0
                return out

            tiler._combine_image = timed_combine
            out = tiler.decode_plain(model, image, decode)
            count = len(out)
        else:
            points = Instances((size, size))
            points.gt_points = centres
            points.gt_classes = classes
            points.gt_point_valid = torch.ones(num, dtype=torch.bool)
            points.gt_point_ids = torch.arange(num)
            best = best_tiles(centres, tiles, (size, size))
            decoder = model.point_decoder

            def oracle_decoder(heads, sub, max_per_image=0):  # the real decoder runs; the object's own mask goes on
                out = decoder(heads, sub, max_per_image=max_per_image)
                inst = out["instances"]
                obj = inst.point_ids  # the click rows: one click per object, in object order
                timing["decoder_px"] = timing.get("decoder_px", 0) + int(inst.pred_masks.sum())
                inst.pred_masks = disc_masks(centres[obj], radii[obj], tiles[int(best[sub.gt_point_ids[0]])].tolist())
                inst.pred_boxes = Boxes(mask_boxes(inst.pred_masks))
                return out

            oracle_decoder.max_per_image = getattr(decoder, "max_per_image", 0)
            model.point_decoder = oracle_decoder
            result = tiler.decode_points(model, image, points)
            t0 = time.perf_counter()
            rles = result["instances"].pred_masks.to_rles()
            timing["part_s"] = time.perf_counter() - t0
            count = len(rles)
            timing["detections"] = num
            timing["decoder_mask_px"] = timing.get("decoder_px", 0) / max(1, count)
    seconds = time.perf_counter() - start
    hwm = _status_kib("VmHWM") if reset else None
    print(json.dumps({
        "load_average": os.getloadavg()[0], "malloc_mmap_threshold": os.environ.get("MALLOC_MMAP_THRESHOLD_"),
        "size": size, "mode": args.child, "objects": num, "tiles": len(tiles), "detections": timing["detections"],
        "outputs": count, "decoder_mask_px": timing.get("decoder_mask_px"), "seconds": seconds, "part_seconds": timing["part_s"],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_before_mib": before / 1024 if before else None,
        "decode_peak_mib": (hwm - before) / 1024 if hwm and before else None,
    }))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    parser.add_argument("--objects", type=int, default=20000, help="objects at 4096 px (same density elsewhere)")
    parser.add_argument("--modes", nargs="+", default=["plain", "points"], choices=["plain", "points"])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--repeats", type=int, default=1, help="processes per row: the fastest run's times, "
                        "the largest memory")
    parser.add_argument("--default-malloc", action="store_true", help="leave glibc's mmap threshold dynamic")
    parser.add_argument("--json", default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-size", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return run_child(args)
    env = dict(os.environ)
    if not args.default_malloc:
        env["MALLOC_MMAP_THRESHOLD_"] = "131072"
    rows = []
    for mode in args.modes:
        for size in args.sizes:
            cmd = [sys.executable, os.path.abspath(__file__), "--child", mode, "--child-size", str(size),
                   "--objects", str(args.objects), "--threads", str(args.threads)]
            runs = [json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
                               .strip().splitlines()[-1]) for _ in range(args.repeats)]
            row = min(runs, key=lambda r: r["seconds"])  # the least disturbed run; memory: the largest
            row.update({k: max(r[k] or 0 for r in runs) for k in ("peak_rss_mib", "decode_peak_mib")})
            row["part_seconds"] = min(r["part_seconds"] for r in runs)
            rows.append(row)
            print(f"[{mode}] {size} px: {json.dumps(row)}", flush=True)
    lines = ["| decoding | image | objects | tiles | tile detections | outputs | s | x 1024 | merge / RLE s | "
             "x 1024 | peak RSS MiB | decoding's own peak MiB | x 1024 | load |", "|" + "---|" * 14]
    for mode in args.modes:
        mine = [r for r in rows if r["mode"] == mode]
        base = min(mine, key=lambda r: r["size"])

        def ratio(r, key):
            return f"{r[key] / base[key]:.1f}" if r[key] and base[key] else "-"

        for r in mine:
            own = "-" if r["decode_peak_mib"] is None else f"{r['decode_peak_mib']:.0f}"
            lines.append(f"| {mode} | {r['size']} | {r['objects']} | {r['tiles']} | {r['detections']} | {r['outputs']} | "
                         f"{r['seconds']:.1f} | {ratio(r, 'seconds')} | {r['part_seconds']:.2f} | "
                         f"{ratio(r, 'part_seconds')} | {r['peak_rss_mib']:.0f} | {own} | {ratio(r, 'decode_peak_mib')} | "
                         f"{r['load_average']:.1f} |")
    text = "\n".join(lines)
    print(text)
    if args.json:
        write_json_atomic({"rows": rows, "table": text}, args.json, indent=2)


if __name__ == "__main__":
    main()
