#!/usr/bin/env python
"""How far the pseudo-labels of two runs differ (e.g. a pipeline on 1 process and on 2, docs/DISTRIBUTED.md).

    python tools/compare_labels.py A.json B.json
    python tools/compare_labels.py output/tiny_1proc output/tiny_2proc [--json diff.json]

With two folders, every pseudo-label json under the first (a json with "annotations" and an exporter's
``info.mode``, or labels.json) is compared with the file at the same relative path under the second; a file
missing there is reported. One line per file (``wssis_d2.evaluation.label_diff``). Exit status 0 whether or
not they differ (a report, not a test).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from wssis_d2.evaluation.label_diff import diff_pseudo_labels, format_label_diff  # noqa: E402
from wssis_d2.data.json_io import write_json_atomic  # noqa: E402


def _is_label_file(path):
    if os.path.basename(path) == "labels.json":
        return True
    try:
        with open(path) as f:
            head = f.read(1 << 16)
    except (OSError, UnicodeDecodeError):
        return False
    return '"annotations"' in head and '"mode"' in head or '"point_ann_id"' in head


def label_files(root):
    """Relative paths of the pseudo-label jsons under ``root``, sorted."""
    found = []
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            if name.endswith(".json") and _is_label_file(path):
                found.append(os.path.relpath(path, root))
    return sorted(found)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help="a pseudo-label json, or a run folder")
    parser.add_argument("b", help="the same for the other run")
    parser.add_argument("--json", default="", help="also write {file: diff} here")
    args = parser.parse_args(argv)
    if os.path.isdir(args.a) != os.path.isdir(args.b):
        parser.error("give two files or two folders")
    pairs = ([(os.path.basename(args.a), args.a, args.b)] if not os.path.isdir(args.a) else
             [(rel, os.path.join(args.a, rel), os.path.join(args.b, rel)) for rel in label_files(args.a)])
    if not pairs:
        parser.error(f"no pseudo-label jsons under {args.a}")
    diffs = {}
    for name, path_a, path_b in pairs:
        if not os.path.isfile(path_b):
            print(f"{name}: missing in {args.b}")
            diffs[name] = None
            continue
        diffs[name] = diff_pseudo_labels(path_a, path_b)
        print(format_label_diff(name, diffs[name]))
    same = sum(1 for d in diffs.values() if d and d["identical"])
    print(f"{same} of {len(diffs)} files identical")
    if args.json:
        write_json_atomic(diffs, args.json, indent=1)
        print(f"written to {args.json}")
    return diffs


if __name__ == "__main__":
    main()
