#!/usr/bin/env python
"""Put the results of pipeline runs side by side, with the headline figures (make benchmark).

    python tools/compare_results.py --run "ImageNet MobileNetV2" output/benchmark/results.json \
        --run "no pretraining (R-18)" output/benchmark/no_pretraining/results.json \
        --output output/benchmark/comparison.md

Columns in the order given; a row missing from a run is "-" (``wssis_d2.pipeline.compare``).
"""
import argparse

from wssis_d2.data.json_io import load_json
from wssis_d2.pipeline.compare import format_comparison
from wssis_d2.utils.errors import run_cli
from wssis_d2.utils.part_files import atomic_output
from wssis_d2.utils.preflight import check_output_file


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", nargs=2, action="append", required=True, metavar=("NAME", "RESULTS_JSON"),
                        help="a column: its name and a pipeline run's results.json")
    parser.add_argument("--output", default="", help="markdown file to write (atomically); also printed")
    args = parser.parse_args(argv)
    if args.output:
        check_output_file(args.output, "comparison")
    md = format_comparison([(name, load_json(path)) for name, path in args.run])
    print(md, end="")
    if args.output:
        with atomic_output(args.output) as f:
            f.write(md)
        print(f"wrote {args.output}")


if __name__ == "__main__":
    run_cli(main)  # one "error: ..." line for a missing or malformed file (--traceback: all of it)
