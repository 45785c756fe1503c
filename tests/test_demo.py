"""tools/demo.py on the tiny profile: the table beside the paper's numbers, comparison.png (a row per point
image, a column per kind) and the bar plot of the model rows."""
import os

import cv2
import pytest

from wssis_d2.pipeline.demo_figures import PAPER_5P, paper_table

from conftest import REPO, free_builtin_names, load_script

TINY = os.path.join(REPO, "configs", "pipeline", "shapes_tiny.yaml")
pytestmark = pytest.mark.usefixtures("one_thread_module")


def test_paper_table_rows():
    table = paper_table({"teacher": 12.34, "full_100": None}, percent=10)
    lines = table.splitlines()
    assert len(lines) == 2 + len(PAPER_5P)
    assert "| teacher (full labels only) | 12.3 | - | 20.1 | 0.51 |" in lines  # no 100% model: no ratio
    assert "| 100% full labels | - | - | 39.7 | 1.00 |" in lines
    table = paper_table({"teacher": 12.0, "student_points_mrn": 18.0, "full_100": 24.0}, percent=10)
    assert "| teacher (full labels only) | 12.0 | 0.50 | 20.1 | 0.51 |" in table.splitlines()
    assert "| 100% full labels | 24.0 | 1.00 | 39.7 | 1.00 |" in table.splitlines()


def test_demo_on_tiny_profile(tmp_path, capsys):
    demo = load_script("tools/demo.py")
    with free_builtin_names():
        out = demo.main(["--config-file", TINY, "--output-dir", str(tmp_path / "demo"), "--overlays", "2"])
    printed = capsys.readouterr().out
    assert "paper (COCO 5%, R-101)" in printed and "| student: full + points + MRN |" in printed
    assert "33.7" in printed
    grid = cv2.imread(out["figures"]["comparison"])
    # 2 point images x 5 columns (the tiny profile fills every pseudo-label row) of 256-px cells
    assert grid is not None and grid.shape[1] == 5 * 256 and 2 * 256 <= grid.shape[0] <= 2 * 256 + 60
    # not a blank canvas: the drawn images carry colour
    assert grid.std() > 10
    bars = cv2.imread(out["figures"]["models_ap"])
    assert bars is not None and bars.shape[:2] == (420, 800)
    assert not any(name.endswith(".tmp.png") for name in os.listdir(tmp_path / "demo"))
