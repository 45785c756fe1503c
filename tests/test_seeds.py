"""Several seeds of one profile: the overrides of each run and the mean +- std of every row."""
import pytest

from wssis_d2.pipeline.config import load_pipeline_cfg
from wssis_d2.pipeline.seeds import aggregate, format_seed_table, seed_opts


def test_seed_opts_move_training_and_split_seeds_and_the_split_names(tmp_path):
    pcfg = load_pipeline_cfg("configs/pipeline/shapes_demo.yaml", output_dir=str(tmp_path / "demo"))
    opts = dict(zip(*[iter(seed_opts(pcfg, 2))] * 2))
    assert opts["SEED"] == pcfg.SEED + 2 and opts["DATA.SPLIT_SEED"] == pcfg.DATA.SPLIT_SEED + 2 == 3
    assert opts["OUTPUT_DIR"] == str(tmp_path / "demo" / "seed_2")
    assert opts["DATA.ROOT"] == pcfg.DATA.ROOT  # the generated images are shared
    assert opts["DATASETS.FULL"] == "wssis_shapes_train_10p_s3_full"
    assert opts["DATASETS.POINTS_GT"] == "wssis_shapes_train_10p_s3_points_gt"
    assert "DATASETS.TRAIN_ALL" not in opts  # not a split name
    run = load_pipeline_cfg("configs/pipeline/shapes_demo.yaml", opts=seed_opts(pcfg, 2))
    assert run.DATASETS.FULL == "wssis_shapes_train_10p_s3_full" and run.SEED == pcfg.SEED + 2


def test_aggregate_mean_std_ratios_and_missing_rows():
    runs = [{"models": {"teacher": 10.0, "full_100": 20.0},
             "models_microscopy": {"teacher": {"accuracy@0.5": 0.4, "count_error": 3.0}},
             "pseudo_labels": {"adaptive": {"AP": 30.0, "mean_iou": 0.5, "microscopy": {"accuracy@0.5": 0.6}}}},
            {"models": {"teacher": 14.0, "full_100": 20.0},
             "models_microscopy": {"teacher": {"accuracy@0.5": 0.6, "count_error": 5.0}},
             "pseudo_labels": {"adaptive": {"AP": 34.0, "mean_iou": 0.7, "microscopy": {"accuracy@0.5": 0.8}}}},
            {"models": {"teacher": None, "full_100": 40.0}, "pseudo_labels": {"adaptive": None}}]
    agg = aggregate(runs)
    assert agg["models"]["teacher"]["mean"] == pytest.approx(12.0) and agg["models"]["teacher"]["n"] == 2
    assert agg["models"]["teacher"]["std"] == pytest.approx(2 ** 0.5 * 2)  # sample std of 10, 14
    assert agg["models"]["full_100"]["mean"] == pytest.approx(80 / 3)
    assert agg["ratios"]["teacher"]["values"] == pytest.approx([0.5, 0.7])
    assert agg["pseudo_labels"]["adaptive"]["values"] == [30.0, 34.0]
    assert agg["pseudo_labels_mean_iou"]["adaptive"]["mean"] == pytest.approx(0.6)
    table = format_seed_table(agg, [0, 1, 2], "demo")
    assert "| teacher | 12.0 +- 2.8 | 0.60 +- 0.14 | 0.500 +- 0.141 | 4.0 +- 1.4 | 2 |" in table
    assert "| full_100 | 26.7 +- 11.5 | 1.00 +- 0.00 | - | - | 3 |" in table
    assert "| adaptive | 32.00 +- 2.83 | 0.600 +- 0.141 | 0.700 +- 0.141 | 2 |" in table
    assert aggregate([{"models": {"teacher": 5.0}}])["models"]["teacher"]["std"] == 0.0
