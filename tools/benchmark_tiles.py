#!/usr/bin/env python
"""Tiles vs whole images on a crowded generated set, one teacher (issue 19; a benchmark, not a test).

1. ``configs/pipeline/shapes_crowded.yaml`` into ``<out>/tiled``: 768-px images with >= 100 shapes of
   10-25 px, a teacher trained on random tiles (128 px x 2), threshold and adaptive pseudo-labels of the
   clicked images decoded on overlapping tiles.
2. The same teacher (its folder linked, never retrained) decodes the same clicks whole, in two pipeline
   runs that reuse the data: ``<out>/whole_config`` at the config's own input size (INPUT.MIN_SIZE_TEST of
   the teacher config, what a user gets without tiles) and ``<out>/whole_native`` at the tiles' scale
   (the 768-px image fed at 1536 px: the objects at the size the teacher learnt them, the grid over the
   whole image).
3. A table per pseudo-label row: mask AP and mean IoU against the true masks, clicks without a mask,
   seconds per image of the export stage (model build and json writing included), written to
   ``<out>/tiles.md`` and ``<out>/tiles.json`` and printed.

    python tools/benchmark_tiles.py [--output-dir output/tiles]

Every step resumes (pipeline stages are skipped when done). One run, one seed: say so with the numbers.
"""
import argparse
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from wssis_d2.data.json_io import load_json, write_json_atomic  # noqa: E402
from wssis_d2.pipeline.stages import read_marker  # noqa: E402
from wssis_d2.utils.part_files import atomic_output  # noqa: E402

PROFILE = os.path.join(ROOT, "configs", "pipeline", "shapes_crowded.yaml")
ROWS = ("threshold", "adaptive")
# variant -> PSEUDO.OPTS of its exports (the tiled run uses the teacher's own tile settings)
VARIANTS = {
    "tiled": [],
    "whole_config": ["INPUT.TILE.SIZE", 0],
    "whole_native": ["INPUT.TILE.SIZE", 0, "INPUT.MIN_SIZE_TEST", 1536, "INPUT.MAX_SIZE_TEST", 1536],
}
LABELS = {"tiled": "tiles of 128 px x 2 (overlap 32)", "whole_config": "whole, config size (192 px)",
          "whole_native": "whole, tiles' scale (1536 px)"}


def run_variant(name, out, opts):
    variant_dir = os.path.join(out, name)
    cmd = [sys.executable, "-m", "wssis_d2.pipeline", "--config-file", PROFILE, "--output-dir", variant_dir]
    if name != "tiled":
        os.makedirs(variant_dir, exist_ok=True)
        teacher = os.path.join(variant_dir, "teacher")
        if not os.path.lexists(teacher):
            os.symlink(os.path.join("..", "tiled", "teacher"), teacher)  # the same teacher, never retrained
        cmd += ["DATA.ROOT", os.path.join(out, "tiled", "data"), "ROWS.MODELS", "[]",
                "PSEUDO.OPTS", repr([str(v) for v in opts])]
    print(f"[benchmark_tiles] {name}: {' '.join(cmd)}", flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)
    return variant_dir


def row_figures(variant_dir, row):
    """AP, mean IoU, clicks, clicks without a mask, images and export seconds of one pseudo-label row."""
    results = load_json(os.path.join(variant_dir, "results.json"))
    report = (results.get("pseudo_labels") or {}).get(row) or {}
    marker = read_marker(os.path.join(variant_dir, f"pseudo_{row}")) or {}
    path = next(iter((marker.get("outputs") or {}).values()), None)
    info = load_json(path)["info"] if path else {}
    images = info.get("num_images_processed") or info.get("num_images")
    seconds = marker.get("seconds")
    return {"AP": report.get("AP"), "mean_iou": report.get("mean_iou"), "num_points": info.get("num_points"),
            "num_points_without_mask": info.get("num_points_without_mask"),
            "num_annotations": info.get("num_annotations"), "images": images, "export_seconds": seconds,
            "seconds_per_image": seconds / images if seconds and images else None}


def _fmt(v, nd=2):
    return "-" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default=os.path.join(ROOT, "output", "tiles"))
    args = parser.parse_args(argv)
    out = os.path.abspath(args.output_dir)
    table = {}
    for name, opts in VARIANTS.items():
        variant_dir = run_variant(name, out, opts)
        table[name] = {row: row_figures(variant_dir, row) for row in ROWS}
    lines = ["| decoding | pseudo-labels | mask AP | mean IoU | clicks without a mask | s / image |",
             "|---|---|---|---|---|---|"]
    for name, rows in table.items():
        for row, f in rows.items():
            lost = (f"{f['num_points_without_mask']} of {f['num_points']}" if row != "threshold"
                    else f"(no clicks used; {f['num_annotations']} masks)")
            lines.append(f"| {LABELS[name]} | {row} | {_fmt(f['AP'])} | {_fmt(f['mean_iou'], 3)} | {lost} | "
                         f"{_fmt(f['seconds_per_image'])} |")
    adaptive = {n: rows["adaptive"]["AP"] for n, rows in table.items()}
    if adaptive["tiled"] is not None and adaptive["whole_config"]:
        lines.append(f"\nadaptive pseudo-label AP: tiled {adaptive['tiled']:.2f} vs whole at the config's size "
                     f"{adaptive['whole_config']:.4f} (x{adaptive['tiled'] / adaptive['whole_config']:.0f})")
    text = "\n".join(lines) + "\n"
    print(text)
    with atomic_output(os.path.join(out, "tiles.md")) as f:
        f.write(text)
    write_json_atomic(table, os.path.join(out, "tiles.json"), indent=2)
    print(f"[benchmark_tiles] wrote {os.path.join(out, 'tiles.md')} and tiles.json")


if __name__ == "__main__":
    main()
