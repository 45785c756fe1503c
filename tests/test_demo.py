"""The demo's table beside the paper's numbers (tools/demo.py itself runs on the tiny pipeline run of
tests/test_pipeline.py: test_demo_tool_on_the_finished_tiny_run)."""
from wssis_d2.pipeline.demo_figures import PAPER_5P, paper_table


def test_paper_table_rows():
    table = paper_table({"teacher": 12.34, "full_100": None}, percent=10)
    lines = table.splitlines()
    assert len(lines) == 2 + len(PAPER_5P)
    assert "| teacher (full labels only) | 12.3 | - | 20.1 | 0.51 |" in lines  # no 100% model: no ratio
    assert "| 100% full labels | - | - | 39.7 | 1.00 |" in lines
    table = paper_table({"teacher": 12.0, "student_points_mrn": 18.0, "full_100": 24.0}, percent=10)
    assert "| teacher (full labels only) | 12.0 | 0.50 | 20.1 | 0.51 |" in table.splitlines()
    assert "| 100% full labels | 24.0 | 1.00 | 39.7 | 1.00 |" in table.splitlines()
