"""One profile, several seeds: the spread of every row (``python -m wssis_d2.pipeline --seeds N``).

Run k (0..N-1) is the profile with ``SEED`` + k (training: initialisation, data order, augmentation) and
``DATA.SPLIT_SEED`` + k (which images are fully labelled; the DATASETS names of the split follow), in
``<OUTPUT_DIR>/seed_<k>``; the generated shapes images themselves (``DATA.SHAPES.SEED``) and ``DATA.ROOT``
are shared. Each run is an ordinary, resumable pipeline run with its own results.json; ``aggregate``
reads them and ``format_seed_table`` writes mean +- sample standard deviation per row to
``<OUTPUT_DIR>/results_seeds.{md,json}``.
"""
import concurrent.futures
import logging
import math
import multiprocessing
import os
import re
from typing import Dict, List, Mapping, Optional, Sequence

from ..data.json_io import load_json, write_json_atomic
from ..utils.part_files import atomic_output
from .config import load_pipeline_cfg
from .results import model_ratios

__all__ = ["seed_opts", "aggregate", "format_seed_table", "run_seeds"]

logger = logging.getLogger(__name__)


def seed_opts(pcfg, k: int) -> List:
    """KEY VALUE overrides of run ``k`` of ``pcfg`` (a loaded pipeline config; module docstring)."""
    split = pcfg.DATA.SPLIT_SEED + k
    opts = ["SEED", pcfg.SEED + k, "DATA.SPLIT_SEED", split, "OUTPUT_DIR", os.path.join(pcfg.OUTPUT_DIR, f"seed_{k}"),
            "DATA.ROOT", pcfg.DATA.ROOT or os.path.join(pcfg.OUTPUT_DIR, "data")]
    if pcfg.DATA.KIND != "custom":
        pattern = re.compile(rf"_s{pcfg.DATA.SPLIT_SEED}_")
        for key, name in pcfg.DATASETS.items():
            if pattern.search(name or ""):
                opts += [f"DATASETS.{key}", pattern.sub(f"_s{split}_", name)]
    return opts


def _stats(values: Sequence[Optional[float]]) -> Optional[dict]:
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return None
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return {"mean": mean, "std": std, "n": len(vals), "values": vals}


def aggregate(results: Sequence[Mapping]) -> Dict[str, Dict[str, Optional[dict]]]:
    """Mean, sample std and values of every row over the runs' results.json contents.

    Returns:
        {"models": {row: stats}, "pseudo_labels": {row: stats of AP}, "pseudo_labels_mean_iou": {...},
         "ratios": {row: stats of row AP / 100% AP}, "models_accuracy", "models_count_error",
         "pseudo_labels_accuracy": {row: stats of the microscopy accuracy@0.5 / count_error}} with stats
        {"mean", "std", "n", "values"} or None where no run has the row.
    """
    out = {"models": {}, "pseudo_labels": {}, "pseudo_labels_mean_iou": {}, "ratios": {}, "models_accuracy": {},
           "models_count_error": {}, "pseudo_labels_accuracy": {}}
    model_rows = list(dict.fromkeys(r for res in results for r in (res.get("models") or {})))
    pseudo_rows = list(dict.fromkeys(r for res in results for r in (res.get("pseudo_labels") or {})))
    for row in model_rows:
        out["models"][row] = _stats([(res.get("models") or {}).get(row) for res in results])
        out["ratios"][row] = _stats([model_ratios(res.get("models") or {}).get(row) for res in results])
        micro = [((res.get("models_microscopy") or {}).get(row)) or {} for res in results]
        out["models_accuracy"][row] = _stats([m.get("accuracy@0.5") for m in micro])
        out["models_count_error"][row] = _stats([m.get("count_error") for m in micro])
    for row in pseudo_rows:
        reports = [(res.get("pseudo_labels") or {}).get(row) or {} for res in results]
        out["pseudo_labels"][row] = _stats([r.get("AP") for r in reports])
        out["pseudo_labels_mean_iou"][row] = _stats([r.get("mean_iou") for r in reports])
        out["pseudo_labels_accuracy"][row] = _stats([(r.get("microscopy") or {}).get("accuracy@0.5") for r in reports])
    return out


def _cell(stats: Optional[dict], digits: int = 1, scale: float = 1.0) -> str:
    if stats is None:
        return "-"
    return f"{stats['mean'] * scale:.{digits}f} +- {stats['std'] * scale:.{digits}f}"


def format_seed_table(agg: Mapping, seeds: Sequence[int], title: str = "") -> str:
    """Markdown: one table of models (AP, AP / 100%, accuracy@0.5, count error), one of pseudo-labels (AP, mean
    IoU, accuracy@0.5)."""
    lines = [f"# {title or 'Results over seeds'}", "",
             f"Mean +- sample standard deviation over {len(seeds)} runs "
             f"(SEED / DATA.SPLIT_SEED offsets {list(seeds)}).",
             "", "| model | mask AP | AP / 100% model | accuracy@0.5 | count error | runs |",
             "|---|---|---|---|---|---|"]
    for row, stats in agg["models"].items():
        n = stats["n"] if stats else 0
        lines.append(f"| {row} | {_cell(stats)} | {_cell(agg['ratios'].get(row), 2)} | "
                     f"{_cell((agg.get('models_accuracy') or {}).get(row), 3)} | "
                     f"{_cell((agg.get('models_count_error') or {}).get(row), 1)} | {n} |")
    lines += ["", "| pseudo-labels | AP | mean IoU | accuracy@0.5 | runs |", "|---|---|---|---|---|"]
    for row, stats in agg["pseudo_labels"].items():
        n = stats["n"] if stats else 0
        lines.append(f"| {row} | {_cell(stats, 2)} | {_cell(agg['pseudo_labels_mean_iou'].get(row), 3)} | "
                     f"{_cell((agg.get('pseudo_labels_accuracy') or {}).get(row), 3)} | {n} |")
    return "\n".join(lines) + "\n"


def _seed_run(config_file: str, opts: Sequence, run_kwargs: dict) -> str:
    """One seed's pipeline run (in its own process); returns its results.json."""
    from .run import run_pipeline  # the stage table is only needed here
    from .stages import stage_logging

    with stage_logging(None):
        run_cfg = load_pipeline_cfg(config_file, list(opts))
        return run_pipeline(run_cfg, config_file=config_file, **run_kwargs)["results"]["json"]


def run_seeds(pcfg, num_seeds: int, config_file: str, opts: Sequence = (), **run_kwargs) -> dict:
    """Run (or resume) the profile with seeds 0..num_seeds-1 (``seed_opts``), then write
    ``<OUTPUT_DIR>/results_seeds.{json,md}``. ``opts``: the user's overrides (applied before the seed's).

    Returns:
        {"aggregate": ``aggregate`` of the runs, "markdown": the table, "runs": [results.json paths]}
    """
    seeds = list(range(num_seeds))
    paths = []
    ctx = multiprocessing.get_context("spawn")
    for k in seeds:
        run_opts = list(opts) + seed_opts(pcfg, k)
        logger.info(f"Seed run {k + 1} of {num_seeds}: {' '.join(map(str, run_opts))}")
        # A fresh process per run: the run-made dataset names stand for one file per process.
        with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            paths.append(pool.submit(_seed_run, config_file, run_opts, run_kwargs).result())
    agg = aggregate([load_json(p) for p in paths])
    md = format_seed_table(agg, seeds, title=f"{config_file}: {num_seeds} seeds")
    write_json_atomic({"aggregate": agg, "runs": paths, "seeds": seeds},
                      os.path.join(pcfg.OUTPUT_DIR, "results_seeds.json"))
    with atomic_output(os.path.join(pcfg.OUTPUT_DIR, "results_seeds.md")) as f:
        f.write(md)
    logger.info(f"Results over {num_seeds} seeds: {os.path.join(pcfg.OUTPUT_DIR, 'results_seeds.md')}")
    return {"aggregate": agg, "markdown": md, "runs": paths}
