"""Issue 13 case 10: a pseudo-label export, a refinement and a training run killed with SIGKILL at a
random point; the same command run again finishes with every image present exactly once and no partial
file under a final name. The children are real processes (train_net.py, tools/refine_pseudo_labels.py)."""
import glob
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from wssis_d2.data.synthetic import generate_shapes_dataset

from conftest import REPO, tiny_model_weights

# `make test-slow` (CI runs it after `make test`): real processes started and killed.
pytestmark = pytest.mark.slow
NUM_IMAGES = 12


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill")
    gt = generate_shapes_dataset(str(root / "shapes"), NUM_IMAGES, image_size=96, seed=3, max_instances=4)
    return root, gt, str(root / "shapes" / "images")


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": REPO, "WSSIS_TRACEBACK": "1"}


def _kill_when(cmd, ready, timeout=240, max_delay=0.3):
    """Start ``cmd``, SIGKILL it once ``ready()`` holds plus a random 0-``max_delay`` s; returns True when it
    was killed (False: it finished first)."""
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env(), cwd=REPO)
    t0 = time.monotonic()
    while child.poll() is None and not ready():
        assert time.monotonic() - t0 < timeout, "child made no progress"
        time.sleep(0.005)
    time.sleep(random.uniform(0, max_delay))
    if child.poll() is not None:
        assert child.returncode == 0, child.stderr.read()[-3000:]
        return False
    child.send_signal(signal.SIGKILL)
    child.wait()
    return True


def _kill_midway(cmd, make_ready, finished, folder):
    """SIGKILL ``cmd`` midway: once ``make_ready()`` holds plus a random delay. On a quiet machine the run can
    finish within the delay (``finished()``: the kill landed after the output was complete, not the case
    under test): then ``folder`` is removed and it is tried again with a shorter delay, 5 times at most."""
    for attempt in range(5):
        shutil.rmtree(folder, ignore_errors=True)
        killed = _kill_when(cmd, make_ready(), max_delay=0.3 / (attempt + 1))
        if killed and not finished():
            return
    raise AssertionError(f"no kill landed before {cmd[1]} finished, in 5 tries")


def _run(cmd):
    res = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=REPO, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def _lines(path, at_least):
    def ready():
        try:
            with open(path, "rb") as f:
                return f.read().count(b"\n") >= at_least
        except FileNotFoundError:
            return False
    return ready


def _no_partial_files(folder):
    left = [p for p in glob.glob(os.path.join(folder, "**", "*"), recursive=True)
            if p.endswith((".tmp", ".jsonl")) or ".part" in os.path.basename(p) or p.endswith(".parts")]
    assert not left, left


def test_pseudo_label_export_killed_and_rerun(data):
    root, gt, images = data
    weights = tiny_model_weights("configs/CPU/SOLOv2_tiny.yaml", str(root / "teacher.pth"))
    out = str(root / "export" / "pseudo.json")
    cmd = [sys.executable, "train_net.py", "--config-file", "configs/pseudo/SOLOv2_tiny_APS.yaml", "--eval-only",
           "MODEL.WEIGHTS", weights, "OUTPUT_DIR", str(root / "export"), "MODEL.WSSIS.EXPORT_PATH", out,
           "DATASETS.WSSIS_REGISTER", f"[['kill_src', '{gt}', '{images}']]", "DATASETS.TEST", "('kill_src',)",
           "INPUT.MIN_SIZE_TEST", "96", "INPUT.MAX_SIZE_TEST", "96"]
    _kill_midway(cmd, lambda: _lines(out + ".part0.jsonl", random.randint(1, NUM_IMAGES // 2)),
                 lambda: os.path.exists(out), str(root / "export"))  # killed midway: no output under the final name
    _run(cmd)
    result = json.load(open(out))
    source = json.load(open(gt))
    assert sorted(im["id"] for im in result["images"]) == sorted(im["id"] for im in source["images"])
    assert result["info"]["num_images_processed"] == NUM_IMAGES
    assert result["info"]["num_points"] == len(source["annotations"])  # every point once
    assert len({a["point_ann_id"] for a in result["annotations"]}) == len(result["annotations"])
    assert [a["id"] for a in result["annotations"]] == list(range(1, len(result["annotations"]) + 1))
    _no_partial_files(str(root / "export"))


def _pseudo_from_gt(gt, images, path):
    """A pseudo-label json made of the true masks (points at the mask's first pixel centre)."""
    import pycocotools.mask as mask_util

    coco = json.load(open(gt))
    anns = []
    for a in coco["annotations"]:
        m = mask_util.decode({**a["segmentation"], "counts": a["segmentation"]["counts"].encode()})
        ys, xs = np.nonzero(m)
        anns.append({**a, "score": 1.0, "point": [float(xs[0]) + 0.5, float(ys[0]) + 0.5], "level": 0,
                     "point_ann_id": a["id"]})
    json.dump({"info": {"image_root": images}, "images": coco["images"], "categories": coco["categories"],
               "annotations": anns}, open(path, "w"))
    return path, coco


def test_refinement_killed_and_rerun(data):
    root, gt, images = data
    pseudo, coco = _pseudo_from_gt(gt, images, str(root / "pseudo_gt.json"))
    weights = tiny_model_weights("configs/MRN/MRN_R18_cpu.yaml", str(root / "mrn.pth"))
    out = str(root / "refine" / "refined.json")
    cmd = [sys.executable, "tools/refine_pseudo_labels.py", "--config-file", "configs/MRN/MRN_R18_cpu.yaml",
           "--pseudo", pseudo, "--output", out, "--log-period", "1", "MODEL.WEIGHTS", weights]
    _kill_midway(cmd, lambda: _lines(os.path.join(out + ".parts", "rank0.jsonl"), random.randint(1, NUM_IMAGES // 2)),
                 lambda: os.path.exists(out), os.path.dirname(out))
    _run(cmd)
    result = json.load(open(out))
    assert result["info"]["mrn_refinement"]["complete"]
    per_image = lambda anns: sorted((a["image_id"], a["point_ann_id"]) for a in anns)  # noqa: E731
    assert per_image(result["annotations"]) == sorted((a["image_id"], a["id"]) for a in coco["annotations"]), \
        "every image once, with all its masks"
    assert len({a["id"] for a in result["annotations"]}) == len(result["annotations"])
    _no_partial_files(str(root / "refine"))


def test_training_killed_and_resumed(data):
    root, gt, images = data
    out = root / "train"
    cmd = [sys.executable, "train_net.py", "--config-file", "configs/CPU/SOLOv2_tiny.yaml", "--resume",
           "OUTPUT_DIR", str(out), "DATASETS.WSSIS_REGISTER", f"[['kill_train', '{gt}', '{images}']]",
           "DATASETS.TRAIN", "('kill_train',)", "DATASETS.TEST", "()", "INPUT.MIN_SIZE_TRAIN", "(96,)",
           "INPUT.MAX_SIZE_TRAIN", "96", "SOLVER.MAX_ITER", "16", "SOLVER.CHECKPOINT_PERIOD", "4",
           "SOLVER.WARMUP_ITERS", "2", "SOLVER.STEPS", "()", "INPUT.MASK_FORMAT", "bitmask"]
    first = random.choice([4, 8])
    _kill_midway(cmd, lambda: lambda: os.path.isfile(out / "last_checkpoint")
                 and (out / "last_checkpoint").read_text().strip() >= f"model_{first - 1:07d}.pth",
                 lambda: os.path.exists(out / "model_final.pth"), str(out))
    res = _run(cmd)
    assert "Starting training from iteration 0" not in res.stderr + res.stdout, "resumed, not restarted"
    assert (out / "last_checkpoint").read_text().strip() == "model_final.pth"
    for ckpt in glob.glob(str(out / "*.pth")):
        assert "iteration" in torch.load(ckpt, map_location="cpu", weights_only=False), ckpt  # complete files
    assert torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)["iteration"] == 15
    _no_partial_files(str(out))
