"""Issue 13 case 11: an output folder that cannot be created or written, or too little free disk, is an
error at the start of a stage / tool, naming the folder."""
import os
import shutil
import subprocess
import sys

import pytest

from wssis_d2.utils.errors import WSSISInputError
from wssis_d2.utils.preflight import check_output_dir

from conftest import REPO, load_train_net, saved_catalogs


@pytest.fixture(scope="module")
def train_net():
    """train_net.py imported without leaving its dataset registrations behind (other tests count them)."""
    with saved_catalogs():
        return load_train_net()


def test_creates_and_probes_a_writable_folder(tmp_path):
    folder = tmp_path / "a" / "b"
    assert check_output_dir(folder) == str(folder)
    assert folder.is_dir() and list(folder.iterdir()) == [], "the probe file is removed"


def test_folder_that_cannot_be_created(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(WSSISInputError, match=f"{tmp_path}/file/out: cannot create the output folder"):
        check_output_dir(tmp_path / "file" / "out")


def test_folder_that_is_not_writable(tmp_path):
    # /proc exists but takes no new files, even for root (chmod would not stop root)
    with pytest.raises(WSSISInputError, match="^/proc: the output folder is not writable"):
        check_output_dir("/proc")
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        with pytest.raises(WSSISInputError, match="is not writable"):
            check_output_dir(ro)


def test_too_little_free_disk(tmp_path, monkeypatch):
    free_mb = shutil.disk_usage(tmp_path).free / 2**20
    monkeypatch.setenv("WSSIS_MIN_FREE_MB", str(free_mb + 10**6))
    with pytest.raises(WSSISInputError, match=rf"{tmp_path}: only \d+ MiB free on its disk, the output folder "
                                              r"needs at least \d+ MiB"):
        check_output_dir(tmp_path)
    assert check_output_dir(tmp_path, need_mb=1) == str(tmp_path)


def test_train_net_and_pipeline_check_output_dir_first(train_net, tmp_path, monkeypatch):
    args = train_net.default_argument_parser().parse_args(
        ["--config-file", f"{REPO}/configs/CPU/SOLOv2_tiny.yaml", "OUTPUT_DIR", "/proc/wssis_out"])
    with pytest.raises(WSSISInputError, match="^/proc/wssis_out: cannot create the OUTPUT_DIR"):
        train_net.setup(args)
    from wssis_d2.pipeline.cli import main as pipeline_main
    monkeypatch.setenv("WSSIS_MIN_FREE_MB", str(shutil.disk_usage(tmp_path).free / 2**20 + 10**6))
    with pytest.raises(WSSISInputError, match=f"^{tmp_path}/pipe: only .* the pipeline OUTPUT_DIR needs"):
        pipeline_main(["--config-file", f"{REPO}/configs/pipeline/shapes_tiny.yaml", "--output-dir",
                       str(tmp_path / "pipe")])
    assert not (tmp_path / "pipe" / "pipeline_config.yaml").exists(), "nothing started"


def test_tool_prints_one_line_for_an_unwritable_output(tmp_path):
    cmd = [sys.executable, os.path.join(REPO, "tools/merge_pseudo_labels.py"), "--full", str(tmp_path / "f.json"),
           "--pseudo", str(tmp_path / "p.json"), "--output", "/proc/merged.json"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": REPO, "WSSIS_TRACEBACK": ""})
    assert res.returncode == 2
    assert "Traceback" not in res.stderr  # (library import warnings may precede the line)
    assert res.stderr.strip().splitlines()[-1].startswith(
        "error: /proc: the folder of the merged json /proc/merged.json is not writable")
