"""Issue 22: the distributed path run for real. ``--num-gpus 2`` on this CPU machine starts 2 processes joined
by the GLOO backend (wssis_d2.engine.launch); the children are real processes (train_net.py,
tools/refine_pseudo_labels.py) with real detectron2 and torch.distributed on loopback ports, nothing
mocked. Training runs DDP in both processes and writes its checkpoints once (rank 0); the pseudo-label
export, the COCO evaluation and the MaskRefineNet refinement give the same result as one process.

The points set has 7 images: rank 0 gets 4 and rank 1 gets 3 (a split that does not divide evenly)."""
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from wssis_d2.data.json_io import load_json, write_json_atomic
from wssis_d2.data.splits import write_wssis_splits
from wssis_d2.data.synthetic import generate_shapes_dataset
from wssis_d2.mrn.samples import make_mrn_sample_jsons
from wssis_d2.mrn.synthetic import make_corrupted_pseudo_json

from conftest import REPO, tiny_model_weights

# With CUDA, launch is detectron2's (NCCL, one GPU per process): not what these CPU configs can run.
# `make test-slow` (CI runs it after `make test`): ~1.5 min of process start-ups on 2 cores.
pytestmark = [pytest.mark.skipif(torch.cuda.is_available(), reason="the GLOO path: machines without CUDA"),
              pytest.mark.slow]

NUM_IMAGES = 8  # 1 fully labeled, 7 in the points set
SIZE = ["INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MAX_SIZE_TRAIN", "96", "INPUT.MIN_SIZE_TEST", "96",
        "INPUT.MAX_SIZE_TEST", "96"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    gt = generate_shapes_dataset(str(root / "shapes"), NUM_IMAGES, image_size=96, seed=5, max_instances=4)
    images = str(root / "shapes" / "images")
    splits = write_wssis_splits(gt, str(root / "splits"), seed=1, count=1, image_root=images, name="dist")
    register = (f"[['dist_train', '{gt}', '{images}'], ['dist_points', '{splits['points']}', '{images}'], "
                f"['dist_points_gt', '{splits['points_gt']}', '{images}']]")
    return {"root": root, "gt": gt, "images": images, "splits": splits, "register": register}


def _run(cmd, env=None):
    """Run ``cmd`` in the repository (1 torch thread per process); fails the test on a non-zero exit."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": REPO, "WSSIS_TRACEBACK": "1", **(env or {})}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=240)
    assert res.returncode == 0, res.stderr[-4000:]
    return res


def _train_net(num_gpus, *args):
    return _run([sys.executable, "train_net.py", "--num-gpus", str(num_gpus), "--dist-url", "auto", *args])


def _logs(output_dir):
    """(rank 0's log.txt, rank 1's log.txt.rank1) of a 2-process run (detectron2's default_setup)."""
    return tuple(open(os.path.join(output_dir, name)).read() for name in ("log.txt", "log.txt.rank1"))


def _inference_batches(log):
    return [int(n) for n in re.findall(r"Start inference on (\d+) batches", log)]


def _check_written_once(out, log0, log1):
    """The checkpoints of a 2-process training: saved by rank 0 only, each once, all complete."""
    assert "World size: 2" in log0 and "Rank of current process: 1. World size: 2" in log1
    saved = re.findall(r"Saving checkpoint to (\S+)", log0)
    assert sorted(os.path.basename(p) for p in saved) == ["model_0000001.pth", "model_0000003.pth", "model_final.pth"]
    assert "Saving checkpoint" not in log1, "rank 1 wrote a checkpoint"
    assert sorted(p.name for p in out.glob("*.pth")) == ["model_0000001.pth", "model_0000003.pth", "model_final.pth"]
    assert (out / "last_checkpoint").read_text().strip() == "model_final.pth"
    assert torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)["iteration"] == 3
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))


def test_solov2_training_two_processes(data, tmp_path):
    out = tmp_path / "train"
    # 4 iterations of 1 image per process (IMS_PER_BATCH 2 over 2 processes): DDP without
    # find_unused_parameters raises on the 2nd iteration when a parameter got no gradient.
    _train_net(2, "--config-file", "configs/CPU/SOLOv2_tiny.yaml", "OUTPUT_DIR", str(out),
               "DATASETS.WSSIS_REGISTER", data["register"], "DATASETS.TRAIN", "('dist_train',)",
               "DATASETS.TEST", "()", *SIZE, "SOLVER.MAX_ITER", "4", "SOLVER.CHECKPOINT_PERIOD", "2",
               "SOLVER.WARMUP_ITERS", "2", "SOLVER.STEPS", "()", "INPUT.MASK_FORMAT", "bitmask")
    log0, log1 = _logs(str(out))
    _check_written_once(out, log0, log1)
    metrics = [json.loads(line) for line in open(out / "metrics.json")]
    assert [m["iteration"] for m in metrics if "total_loss" in m][-1] == 3


def test_mrn_training_two_processes(data, tmp_path):
    gt = load_json(data["gt"])
    pseudo = [write_json_atomic(make_corrupted_pseudo_json(gt, seed=s, image_root=data["images"]),
                                str(tmp_path / f"pseudo{s}.json")) for s in (0, 1)]
    samples = make_mrn_sample_jsons(pseudo, data["gt"], val_fraction=0.25, seed=0)
    for split in ("train", "val"):  # train_net.py registers $DETECTRON2_DATASETS/mrn/<name>.json
        write_json_atomic(samples[split], str(tmp_path / "mrn" / f"dist_mrn_{split}.json"))
    out = tmp_path / "mrn_train"
    _run([sys.executable, "train_net.py", "--num-gpus", "2", "--dist-url", "auto", "--config-file",
          "configs/MRN/MRN_R18_cpu.yaml", "OUTPUT_DIR", str(out), "DATASETS.TRAIN", "('dist_mrn_train',)",
          "DATASETS.TEST", "('dist_mrn_val',)", "SOLVER.MAX_ITER", "4", "SOLVER.CHECKPOINT_PERIOD", "2",
          "SOLVER.IMS_PER_BATCH", "4", "SOLVER.WARMUP_ITERS", "2", "MODEL.MRN.CROP_SIZE", "32"],
         env={"DETECTRON2_DATASETS": str(tmp_path)})
    log0, log1 = _logs(str(out))
    _check_written_once(out, log0, log1)
    # the final evaluation: every validation sample once over the 2 processes (the evaluator's gather)
    num_val = len(samples["val"]["annotations"])
    assert f"MRN evaluation on {num_val} samples" in log0, log0[-2000:]


@pytest.fixture(scope="module")
def teacher(data):
    return tiny_model_weights("configs/CPU/SOLOv2_tiny.yaml", str(data["root"] / "teacher.pth"))


def test_pseudo_label_export_two_processes_equals_one(data, teacher, tmp_path):
    results = {}
    for n in (1, 2):
        out = tmp_path / f"export{n}"
        path = str(out / "pseudo.json")
        _train_net(n, "--config-file", "configs/pseudo/SOLOv2_tiny_APS.yaml", "--eval-only",
                   "MODEL.WEIGHTS", teacher, "OUTPUT_DIR", str(out), "MODEL.WSSIS.EXPORT_PATH", path,
                   "DATASETS.WSSIS_REGISTER", data["register"], "DATASETS.TEST", "('dist_points',)", *SIZE)
        results[n] = load_json(path)
        assert sorted(os.listdir(out)) == sorted(["config.yaml", "log.txt", "pseudo.json"]
                                                 + (["log.txt.rank1"] if n == 2 else [])), "part files removed"
    log0, log1 = _logs(str(tmp_path / "export2"))
    assert (_inference_batches(log0), _inference_batches(log1)) == ([4], [3]), "each image on one rank"
    one, two = results[1], results[2]
    assert two["annotations"] == one["annotations"]  # ids, masks, scores, points, levels: all equal
    assert len(one["annotations"]) > 0 and two["images"] == one["images"]
    assert two["categories"] == one["categories"]
    info_keys = set(one["info"]) - {"date_created", "config_file"}
    assert {k: two["info"][k] for k in info_keys} == {k: one["info"][k] for k in info_keys}
    assert two["info"]["num_images_processed"] == 7
    assert two["info"]["num_points"] == len(load_json(data["splits"]["points"])["annotations"])


def test_coco_evaluation_two_processes_equals_one(data, teacher, tmp_path):
    results, predictions = {}, {}
    for n in (1, 2):
        out = tmp_path / f"eval{n}"
        _train_net(n, "--config-file", "configs/CPU/SOLOv2_tiny.yaml", "--eval-only", "MODEL.WEIGHTS",
                   teacher, "OUTPUT_DIR", str(out), "DATASETS.WSSIS_REGISTER", data["register"],
                   "DATASETS.TEST", "('dist_points_gt',)", *SIZE,
                   # a random model: let its weak masks through so that AP is not just 0
                   "MODEL.SOLOV2.SCORE_THR", "0.0", "MODEL.SOLOV2.UPDATE_THR", "0.0")
        log = open(out / "log.txt").read()
        results[n] = re.findall(r"copypaste: (.+)", log)
        predictions[n] = load_json(str(out / "inference" / "coco_instances_results.json"))
    log0, log1 = _logs(str(tmp_path / "eval2"))
    assert (_inference_batches(log0), _inference_batches(log1)) == ([4], [3])
    assert len({p["image_id"] for p in predictions[1]}) == 7
    assert predictions[2] == predictions[1], "gathered in rank order: one process's predictions, in order"
    assert results[2] == results[1], results  # detectron2's bbox and segm AP lines, all equal
    assert results[1][0] == "Task: bbox" and results[1][3] == "Task: segm"
    assert float(results[1][2].split(",")[1]) > 0, "bbox AP50: the comparison is not one of zeros only"


REFINE_OPTS = ["MODEL.MRN.CROP_SIZE", "160", "MODEL.MRN.REFINE_BATCH_SIZE", "1"]  # ~0.1 s per instance


def _refine_cmd(refinement, num_gpus, output):
    return [sys.executable, "tools/refine_pseudo_labels.py", "--num-gpus", str(num_gpus), "--dist-url", "auto",
            "--config-file", "configs/MRN/MRN_R18_cpu.yaml", "--pseudo", refinement["pseudo"], "--output", output,
            "MODEL.WEIGHTS", refinement["weights"], *REFINE_OPTS]


@pytest.fixture(scope="module")
def refinement(data):
    """Coarse masks of the 7 point images, a random MaskRefineNet, and the 1-process refinement of them."""
    root = data["root"] / "refine"
    pseudo = make_corrupted_pseudo_json(load_json(data["splits"]["points_gt"]), seed=0, image_root=data["images"])
    out = {"pseudo": write_json_atomic(pseudo, str(root / "pseudo.json")),
           "weights": tiny_model_weights("configs/MRN/MRN_R18_cpu.yaml", str(root / "mrn.pth"))}
    _run(_refine_cmd(out, 1, str(root / "one" / "refined.json")))
    out["one"] = load_json(str(root / "one" / "refined.json"))
    return out


def _check_refined_equal(two, one):
    assert two["annotations"] == one["annotations"] and len(one["annotations"]) > 0
    assert any(a["refined"] for a in one["annotations"])
    assert two["images"] == one["images"] and two["categories"] == one["categories"]
    ref1, ref2 = one["info"]["mrn_refinement"], two["info"]["mrn_refinement"]
    for key in ("num_images", "num_annotations", "num_refined", "num_kept_coarse", "complete"):
        assert ref2[key] == ref1[key], key


def test_refinement_two_processes_equals_one(refinement, tmp_path):
    out = str(tmp_path / "refined.json")
    _run(_refine_cmd(refinement, 2, out))
    assert os.listdir(tmp_path) == ["refined.json"], "part files removed"
    two = load_json(out)
    _check_refined_equal(two, refinement["one"])
    assert (refinement["one"]["info"]["mrn_refinement"]["world_size"],
            two["info"]["mrn_refinement"]["world_size"]) == (1, 2)


def _part_lines(parts_dir):
    n = 0
    for path in glob.glob(os.path.join(parts_dir, "rank*.jsonl")):
        with open(path, "rb") as f:
            n += f.read().count(b"\n")
    return n


def test_refinement_killed_in_two_processes_resumes_in_one(refinement, tmp_path):
    """SIGKILL to the process group of a 2-process refinement (launcher and both ranks) once an image is
    written; the same command with 1 process resumes from both ranks' part files: the result equals the
    uninterrupted run, every image once."""
    out = str(tmp_path / "run" / "refined.json")
    parts = out + ".parts"
    for attempt in range(4):  # the run can finish before the kill lands: try again
        shutil.rmtree(tmp_path / "run", ignore_errors=True)
        os.makedirs(tmp_path / "run")
        with open(tmp_path / "stderr.txt", "w") as err:
            child = subprocess.Popen(_refine_cmd(refinement, 2, out), cwd=REPO, stdout=subprocess.DEVNULL,
                                     stderr=err, start_new_session=True,
                                     env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": REPO})
            t0 = time.monotonic()
            while child.poll() is None and _part_lines(parts) < 1:
                assert time.monotonic() - t0 < 120, "no image refined in 120 s"
                time.sleep(0.005)
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        done = _part_lines(parts)
        if not os.path.exists(out) and 0 < done < 7:
            break
    else:
        raise AssertionError("no kill landed midway in 4 tries")
    res = _run(_refine_cmd(refinement, 1, out))
    resumed = load_json(out)
    _check_refined_equal(resumed, refinement["one"])
    run = resumed["info"]["mrn_refinement"]
    assert run["resumed_images"] == done and run["world_size"] == 1, (run, done)
    assert f"{done} done earlier" in res.stdout + res.stderr
    assert not os.path.exists(parts), "part files removed"


def _step(num_processes, out):
    _run([sys.executable, "tests/dist_step.py", "--num-processes", str(num_processes), "--out", str(out)])
    return torch.load(out, map_location="cpu", weights_only=False)


def _max_abs_diff(a, b):
    assert a.keys() == b.keys()
    return max((a[n] - b[n]).abs().max().item() for n in a)


def test_two_process_step_equals_one_process_step(tmp_path):
    """SOLOv2's losses are normalised over the global batch: a DDP step of 2 processes with 2 of the 4
    images each (3 + 0 and 1 + 2 objects) logs the loss and applies the gradient of 1 process on all 4
    (float tolerance: the all-reduce adds in another order). And the sample-seeded loader
    (DATALOADER.WSSIS_SAMPLE_SEEDS) gives every stream position the same sample and draws in both."""
    one, two = _step(1, tmp_path / "one.pth"), _step(2, tmp_path / "two.pth")
    assert one["losses"].keys() == two["losses"].keys() == {"loss_cate", "loss_mask"}
    for k, v in one["losses"].items():
        assert two["losses"][k] == pytest.approx(v, rel=1e-5)
    scale = max(g.abs().max().item() for g in one["grads"].values())
    assert _max_abs_diff(one["grads"], two["grads"]) < 1e-5 * scale
    # what 2 processes normalising by their own counts would do: far outside that tolerance
    assert _max_abs_diff(one["grads"], one["per_process"]["grads"]) > 1e-2 * scale
    assert one["per_process"]["losses"]["loss_cate"] != pytest.approx(one["losses"]["loss_cate"], rel=1e-3)
    assert two["samples"] == one["samples"]
    assert len({s["np"] for s in one["samples"]}) == 8  # drawn per sample, not one value repeated
