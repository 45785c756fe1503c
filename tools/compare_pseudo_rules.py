#!/usr/bin/env python
"""Pseudo-labels of one teacher under several decoding rules, scored against the true masks.

Benchmark script (prints numbers, asserts nothing). Each variant is a list of config overrides of the
teacher config (e.g. the same-cell collision rule or the tiny-mask rule); every variant exports the
pseudo-labels of the same point images with the same weights and is scored with
``pseudo_label_quality`` (mask AP with scores 1, mean IoU per point, coverage), beside the number of
points without a pseudo-label and of same-cell collisions from the export's info.

    # on an existing split (e.g. the benchmark's 5% split written by the pipeline)
    python tools/compare_pseudo_rules.py --config-file configs/CPU/SOLOv2_shapes.yaml \
        --weights output/benchmark/teacher/model_final.pth \
        --points-json D/wssis_shapes_train_5p_s1_points.json --points-gt-json D/..._points_gt.json \
        --image-root D/images --output-dir output/rules \
        --variant reassign MODEL.WSSIS.COLLISION_RULE reassign --variant share MODEL.WSSIS.COLLISION_RULE share

    # on generated crowded images (>= 50 small touching shapes each), written to OUTPUT_DIR/crowded;
    # --train-only writes such images with their masks (another --crowded-seed) to train a teacher on
    python tools/compare_pseudo_rules.py --config-file ... --weights ... --crowded 40 --output-dir ... \
        --variant ...

Output: OUTPUT_DIR/<variant>.json (the exports) and OUTPUT_DIR/compare.json (the table).
"""
import argparse
import os
from collections import Counter
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import wssis_d2  # noqa: F401,E402  (first: it hides fvcore's torch.jit.script FutureWarning)

from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.config import get_cfg  # noqa: E402
from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402
from detectron2.evaluation import inference_on_dataset  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from detectron2.utils.logger import setup_logger  # noqa: E402

from wssis_d2 import add_wssis_config  # noqa: E402
from wssis_d2.data.datasets.point_instances import register_point_instances  # noqa: E402
from wssis_d2.data.json_io import load_json, write_json_atomic  # noqa: E402
from wssis_d2.data.splits import write_wssis_splits  # noqa: E402
from wssis_d2.data.synthetic import generate_shapes_dataset  # noqa: E402
from wssis_d2.evaluation import build_pseudo_label_exporter, pseudo_label_quality  # noqa: E402
from wssis_d2.pseudo import build_pseudo_label_loader  # noqa: E402
from wssis_d2.checkpoint_check import checked  # noqa: E402
from wssis_d2.utils.errors import run_cli  # noqa: E402

# Crowded scenes: many small touching shapes, so that same-class points share grid cells.
CROWDED_MIN_INSTANCES = 50


def crowded_dataset(output_dir, num_images, *, size=192, min_size=10.0, max_size=25.0, seed=5):
    """Generate clean-style images of ``size`` px with up to 150 shapes of ``min_size``..``max_size`` px
    and keep the first ``num_images`` with >= 50 visible instances. Returns the COCO json path."""
    os.makedirs(output_dir, exist_ok=True)
    json_file = generate_shapes_dataset(output_dir, 2 * num_images + 2, image_size=size, seed=seed, split="train",
                                        max_instances=150, min_size=min_size, max_size_fraction=max_size / size,
                                        style="clean")
    coco = load_json(json_file)
    per_image = Counter(a["image_id"] for a in coco["annotations"])
    keep = set([im["id"] for im in coco["images"] if per_image[im["id"]] >= CROWDED_MIN_INSTANCES][:num_images])
    coco["images"] = [im for im in coco["images"] if im["id"] in keep]
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] in keep]
    crowded_json = os.path.join(output_dir, "crowded.json")
    write_json_atomic(coco, crowded_json)
    return crowded_json


def make_crowded(output_dir, num_images, **kwargs):
    """Crowded point images (1 full image, the rest points): (points json, points_gt json, image root)."""
    root = os.path.join(output_dir, "crowded")
    crowded_json = crowded_dataset(root, num_images + 1, **kwargs)
    paths = write_wssis_splits(crowded_json, root, seed=1, count=1, name="crowded",
                               image_root=os.path.join(root, "images"))
    return paths["points"], paths["points_gt"], os.path.join(root, "images")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", help="teacher config")
    p.add_argument("--weights", help="teacher checkpoint")
    p.add_argument("--points-json", help="point-label json of the point images")
    p.add_argument("--points-gt-json", help="true masks of the same images")
    p.add_argument("--image-root", help="image directory of both jsons")
    p.add_argument("--crowded", type=int, default=0, help="generate this many crowded images instead")
    p.add_argument("--crowded-size", type=int, default=192, help="side of the crowded images, px")
    p.add_argument("--crowded-scales", type=float, nargs=2, default=(10.0, 25.0), help="shape sizes, px")
    p.add_argument("--crowded-seed", type=int, default=5, help="generator seed of the crowded images")
    p.add_argument("--train-only", action="store_true",
                   help="with --crowded: only write the crowded images with their masks (e.g. to train a teacher)")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--variant", nargs="+", action="append", default=[], metavar=("NAME", "KEY VALUE"),
                   help="a name and config overrides; repeat for each variant")
    p.add_argument("--opts", nargs="*", default=[], help="config overrides of every variant (before its own)")
    args = p.parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    logger = setup_logger(name="compare_pseudo_rules")
    setup_logger(name="wssis_d2")
    if args.crowded:
        kwargs = dict(size=args.crowded_size, min_size=args.crowded_scales[0], max_size=args.crowded_scales[1],
                      seed=args.crowded_seed)
        if args.train_only:
            print(crowded_dataset(os.path.join(args.output_dir, "crowded"), args.crowded, **kwargs))
            return
        args.points_json, args.points_gt_json, args.image_root = make_crowded(args.output_dir, args.crowded,
                                                                              **kwargs)
    if not (args.config_file and args.weights and args.variant):
        p.error("give --config-file, --weights and at least one --variant")
    if not (args.points_json and args.points_gt_json and args.image_root):
        p.error("give --points-json, --points-gt-json and --image-root, or --crowded N")
    gt = load_json(args.points_gt_json)
    counts = [sum(1 for a in gt["annotations"] if a["image_id"] == im["id"] and not a.get("iscrowd", 0))
              for im in gt["images"]]
    logger.info(f"{len(gt['images'])} point images, {sum(counts)} points, {sum(counts) / max(len(counts), 1):.1f} "
                f"per image (max {max(counts, default=0)})")
    name = "_compare_pseudo_rules_points"
    register_point_instances(name, {}, args.points_json, args.image_root)
    rows = {}
    try:
        for variant in args.variant:
            vname, opts = variant[0], variant[1:]
            cfg = get_cfg()
            add_wssis_config(cfg)
            cfg.merge_from_file(args.config_file)
            cfg.merge_from_list(["MODEL.WEIGHTS", args.weights, "DATASETS.TEST", f"('{name}',)",
                                 "OUTPUT_DIR", args.output_dir] + list(args.opts) + list(opts))
            cfg.freeze()
            model = build_model(cfg)
            checked(DetectionCheckpointer(model)).load(args.weights)
            out = os.path.join(args.output_dir, f"{vname}.json")
            start = time.perf_counter()
            inference_on_dataset(model, build_pseudo_label_loader(cfg, name),
                                 build_pseudo_label_exporter(cfg, name, out))
            seconds = time.perf_counter() - start
            info = load_json(out)["info"]
            report = pseudo_label_quality(out, gt)
            rows[vname] = {**{k: report[k] for k in ("AP", "AP50", "AP75", "mean_iou", "coverage")},
                           "without_mask": info["num_points_without_mask"],
                           "collisions": info["num_collisions"], "seconds": round(seconds, 1), "opts": opts}
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    lines = ["| variant | AP | AP50 | AP75 | mean IoU | coverage | points without mask | collisions | s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for vname, r in rows.items():
        lines.append(f"| {vname} | {r['AP']:.2f} | {r['AP50']:.2f} | {r['AP75']:.2f} | {r['mean_iou']:.3f} | "
                     f"{r['coverage']:.3f} | {r['without_mask']} | {r['collisions']} | {r['seconds']} |")
    print("\n".join(lines))
    write_json_atomic({"points": sum(counts), "images": len(counts), "rows": rows},
                      os.path.join(args.output_dir, "compare.json"), indent=2)
    print(f"wrote {os.path.join(args.output_dir, 'compare.json')}")


if __name__ == "__main__":
    run_cli(main)  # one "error: ..." line for bad input (--traceback: all of it)
