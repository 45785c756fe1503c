#!/usr/bin/env python
"""Quality of pseudo-labels against the true masks of the point images (not the teacher's val AP).

    python tools/pseudo_label_report.py --pseudo output/.../pseudo_labels/<points set>.json \
        --gt datasets/coco/wssis_splits/train2017_5p_s1_points_gt.json [--json report.json]

Prints mask AP/AP50/AP75/APs/APm/APl (every score set to 1), mean IoU per point (no mask = 0),
coverage and the histogram of chosen levels; ``--json`` writes exactly those keys
(``wssis_d2.evaluation.quality``). Several ``--pseudo NAME=PATH`` print one comparison table.
"""
import argparse

from wssis_d2.data.json_io import load_json, write_json_atomic
from wssis_d2.evaluation.quality import compare_reports, format_report, pseudo_label_quality
from wssis_d2.utils.errors import run_cli


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pseudo", required=True, nargs="+", help="pseudo-label json(s), optionally NAME=PATH")
    parser.add_argument("--gt", required=True, help="points_gt json (true masks of the point images)")
    parser.add_argument("--json", default=None, help="write the report (or {name: report}) here")
    args = parser.parse_args(argv)
    gt = load_json(args.gt)
    reports = {}
    for item in args.pseudo:
        name, _, path = item.rpartition("=") if "=" in item else (item, "", item)
        reports[name] = pseudo_label_quality(path, gt)
    if len(reports) == 1:
        report = next(iter(reports.values()))
        print(format_report(report))
    else:
        report = reports
        compare_reports(reports)
    if args.json:
        write_json_atomic(report, args.json, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    run_cli(main)  # one "error: ..." line for bad input (--traceback: all of it)
