"""Refinement stage: valid output json, coarse masks kept when refinement is empty, resume, shards."""
import importlib.util
import os

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from pycocotools.coco import COCO

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.modeling import build_model

from wssis_d2.config import add_wssis_config
from wssis_d2.data.json_io import load_json, write_json_atomic
from wssis_d2.data.synthetic import generate_shapes_dataset
from wssis_d2.mrn import crop_boxes
from wssis_d2.mrn.refine import (
    _check_pseudo,
    merge_parts,
    output_is_complete,
    parts_dir_for,
    read_parts,
    refine_pseudo_labels,
    refine_shard,
    shard_images,
)
from wssis_d2.mrn.synthetic import make_corrupted_pseudo_json

REPO = os.path.join(os.path.dirname(__file__), "..")
CPU_CFG = os.path.join(REPO, "configs", "MRN", "MRN_R18_cpu.yaml")


pytestmark = pytest.mark.usefixtures("one_thread_module")


def _cfg():
    cfg = get_cfg()
    add_wssis_config(cfg)
    cfg.merge_from_file(CPU_CFG)
    cfg.MODEL.MRN.CROP_SIZE = 32
    cfg.MODEL.MRN.REFINE_BATCH_SIZE = 4  # several batches per image
    return cfg


def _model(bias=None):
    torch.manual_seed(0)
    model = build_model(_cfg()).eval()
    if bias is not None:
        torch.nn.init.constant_(model.decoder.predictor.bias, bias)
    return model


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("refine"))
    gt = generate_shapes_dataset(root, 5, image_size=80, seed=11, split="train")
    image_root = os.path.join(root, "images")
    pseudo = make_corrupted_pseudo_json(load_json(gt), seed=0, image_root=image_root)
    pseudo["images"].append({"id": 99, "file_name": "none.jpg", "height": 80, "width": 80})  # no instance
    return {"root": root, "pseudo": write_json_atomic(pseudo, os.path.join(root, "pseudo.json")),
            "image_root": image_root}


def _decode(rle):
    return mask_util.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")}).astype(bool)


def _check_valid(path, pseudo_path):
    pseudo = load_json(pseudo_path)
    out = load_json(path)
    coco = COCO(path)  # pycocotools accepts it
    assert len(coco.getAnnIds()) == len(pseudo["annotations"])
    assert out["images"] == pseudo["images"] and out["categories"] == pseudo["categories"]
    for a, p in zip(out["annotations"], pseudo["annotations"]):
        assert a["id"] == p["id"] and a["point"] == p["point"] and a["category_id"] == p["category_id"]
        assert a["point_ann_id"] == p["point_ann_id"] and isinstance(a["refined"], bool)
        m = _decode(a["segmentation"])
        assert a["area"] == m.sum()
        if m.any():
            ys, xs = np.nonzero(m)
            assert a["bbox"] == [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]
        if not a["refined"]:
            assert a["segmentation"] == p["segmentation"]
    return out


def test_cli_writes_a_valid_json(data, tmp_path):
    model = _model()
    weights = str(tmp_path / "mrn.pth")
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("mrn")
    spec = importlib.util.spec_from_file_location("refine_cli", os.path.join(REPO, "tools",
                                                                             "refine_pseudo_labels.py"))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    output = str(tmp_path / "refined.json")
    argv = ["--config-file", CPU_CFG, "--pseudo", data["pseudo"], "--output", output, "--log-period", "2",
            "MODEL.WEIGHTS", weights, "MODEL.MRN.CROP_SIZE", "32"]
    res = cli.main(cli.get_parser().parse_args(argv))
    out = _check_valid(output, data["pseudo"])
    rec = out["info"]["mrn_refinement"]
    assert rec["complete"] and rec["weights"] == os.path.abspath(weights)
    assert rec["num_annotations"] == len(out["annotations"]) == res["num_annotations"]
    assert rec["num_refined"] + rec["num_kept_coarse"] == rec["num_annotations"]
    assert res["instances_per_s"] > 0 and not os.path.exists(parts_dir_for(output))
    assert out["info"]["image_root"] == data["image_root"]  # input info kept
    # a complete output is skipped; untrained weights are refused
    assert cli.main(cli.get_parser().parse_args(argv))["skipped"]
    with pytest.raises(ValueError, match="MODEL.WEIGHTS is empty"):
        cli.main(cli.get_parser().parse_args(argv[:-4] + ["--overwrite", "MODEL.WEIGHTS", ""]))


def test_empty_refinement_keeps_the_coarse_mask(data, tmp_path):
    output = str(tmp_path / "out.json")
    res = refine_pseudo_labels(_model(bias=-1e4), data["pseudo"], output, image_format="RGB")
    out = _check_valid(output, data["pseudo"])
    n = len(out["annotations"])
    assert res["num_kept_coarse"] == n and res["num_refined"] == 0
    assert not any(a["refined"] for a in out["annotations"])


def test_full_refinement_fills_the_crop_box(data, tmp_path):
    """Logits +1e4 everywhere: the refined mask is the crop box, pasted back exactly."""
    output = str(tmp_path / "out.json")
    model = _model(bias=1e4)
    res = refine_pseudo_labels(model, data["pseudo"], output, image_format="RGB")
    out = _check_valid(output, data["pseudo"])
    pseudo = load_json(data["pseudo"])
    assert res["num_refined"] == len(out["annotations"])
    for a, p in zip(out["annotations"], pseudo["annotations"]):
        coarse = torch.from_numpy(_decode(p["segmentation"]))[None]
        box = crop_boxes(coarse, torch.tensor([p["point"]]), coarse.shape[-2:], model.box_scale)[0]
        # pixel (j + 0.5) is pasted when x0 <= j + 0.5 <= x1 (edges included)
        x0, y0 = torch.ceil(box[:2] - 0.5).tolist()
        x1, y1 = (torch.floor(box[2:] - 0.5) + 1).tolist()
        assert a["bbox"] == [x0, y0, x1 - x0, y1 - y0]


def test_resume_after_interruption_has_no_duplicates(data, tmp_path):
    output = str(tmp_path / "out.json")
    reference = str(tmp_path / "ref.json")
    refine_pseudo_labels(_model(), data["pseudo"], reference, image_format="RGB")

    model = _model()
    calls = {"n": 0}
    orig = model.refine

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated interruption")
        return orig(*args, **kwargs)

    model.refine = failing
    with pytest.raises(KeyboardInterrupt):
        refine_pseudo_labels(model, data["pseudo"], output, image_format="RGB")
    parts = parts_dir_for(output)
    assert len(read_parts(parts)) == 2 and not os.path.exists(output)
    with open(os.path.join(parts, "rank0.jsonl"), "a") as f:
        f.write('{"image_id": 3, "annotations": [')  # killed in the middle of a line
    with open(os.path.join(parts, "rank1.jsonl"), "w"):  # a rank file of an earlier 2-process run
        pass

    res = refine_pseudo_labels(_model(), data["pseudo"], output, image_format="RGB")
    assert res["images"] == 3  # the 2 finished images are not redone
    out = load_json(output)
    ids = [a["id"] for a in out["annotations"]]
    assert len(ids) == len(set(ids)) == len(load_json(data["pseudo"])["annotations"])
    assert out["annotations"] == load_json(reference)["annotations"]
    assert out["info"]["mrn_refinement"]["resumed_images"] == 2
    assert output_is_complete(output) and not os.path.exists(parts)


def test_rank_shards_partition_the_images(data, tmp_path):
    """What each process of a 3-process run does, in sequence: disjoint shards, one merged output."""
    pseudo = load_json(data["pseudo"])
    model = _model()
    id_map = _check_pseudo(pseudo, "pseudo", model)
    pending = list(dict.fromkeys(a["image_id"] for a in pseudo["annotations"]))
    shards = [shard_images(pending, r, 3) for r in range(3)]
    assert sorted(sum(shards, [])) == sorted(pending)
    output = str(tmp_path / "out.json")
    parts = parts_dir_for(output)
    for r, shard in enumerate(shards):
        refine_shard(model, pseudo, shard, data["image_root"], os.path.join(parts, f"rank{r}.jsonl"),
                     image_format="RGB", id_map=id_map, log_period=0)
    counts = merge_parts(pseudo, parts, output, {"world_size": 3})
    reference = str(tmp_path / "ref.json")
    refine_pseudo_labels(_model(), data["pseudo"], reference, image_format="RGB")
    assert load_json(output)["annotations"] == load_json(reference)["annotations"]
    assert counts["num_annotations"] == len(pseudo["annotations"])
