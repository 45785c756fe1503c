#!/usr/bin/env python
"""Build MaskRefineNet training / held-out sample jsons from the teacher's pseudo-labels on the FULL
images (one pseudo json per teacher checkpoint) and the GT json of those images.

Example (synthetic shapes, 5% split, two teacher checkpoints):
    python tools/build_mrn_dataset.py \\
        --pseudo output/pseudo/full_5p_iter2000.json output/pseudo/full_5p_iter4000.json \\
        --gt datasets/wssis_shapes/splits/train_5p_s1_full.json \\
        --name wssis_shapes_5p_s1_mrn --val-fraction 0.1
    # -> datasets/mrn/wssis_shapes_5p_s1_mrn_train.json, ..._val.json, registered by train_net.py under
    #    the names wssis_shapes_5p_s1_mrn_train / wssis_shapes_5p_s1_mrn_val

Pairing: by ``point_ann_id``; where it is -1, the GT instance of the same class whose centroid point is
nearest. See docs/MRN.md and wssis_d2/mrn/samples.py.
"""
import argparse
import logging
import os

from detectron2.utils.logger import setup_logger

from wssis_d2.data.json_io import write_json_atomic
from wssis_d2.mrn.datasets import mrn_dataset_root
from wssis_d2.mrn.samples import make_mrn_sample_jsons
from wssis_d2.utils.errors import run_cli
from wssis_d2.utils.preflight import check_output_dir


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pseudo", nargs="+", required=True, help="pseudo-label jsons on the full images")
    p.add_argument("--gt", required=True, help="GT json of the full images")
    p.add_argument("--name", required=True, help="dataset name prefix: writes <name>_train/_val.json")
    p.add_argument("--image-root", default=None, help="default: the pseudo jsons' info['image_root']")
    p.add_argument("--val-fraction", type=float, default=0.0, help="images held out for evaluation")
    p.add_argument("--seed", type=int, default=1, help="holdout seed")
    p.add_argument("--output-dir", default=None,
                   help="default: $DETECTRON2_DATASETS/mrn (where train_net.py registers them)")
    args = p.parse_args(argv)
    setup_logger(name="wssis_d2")
    log = logging.getLogger("wssis_d2.build_mrn_dataset")
    out = make_mrn_sample_jsons(args.pseudo, args.gt, image_root=args.image_root,
                                val_fraction=args.val_fraction, seed=args.seed)
    out_dir = check_output_dir(args.output_dir or mrn_dataset_root(), "MRN sample folder")
    for split, data in out.items():
        if split == "val" and not data["images"]:
            continue
        path = write_json_atomic(data, os.path.join(out_dir, f"{args.name}_{split}.json"))
        info = data["info"]
        log.info(f"{path}: {info['num_samples']} samples on {info['num_images']} images, "
                 f"mean coarse IoU {info['mean_coarse_iou'] or 0:.3f} (dataset {args.name}_{split})")


if __name__ == "__main__":
    run_cli(main)  # one "error: ..." line for bad input (--traceback: all of it)
