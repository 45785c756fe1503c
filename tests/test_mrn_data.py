"""MaskRefineNet training data: pairing, holdout, registration, and train/refine input parity."""
import os

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch

from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model
from detectron2.structures import BitMasks

from wssis_d2.config import add_wssis_config
from wssis_d2.data.categories import contiguous_category_map
from wssis_d2.data.json_io import load_json, write_json_atomic
from wssis_d2.data.synthetic import generate_shapes_dataset
from wssis_d2.mrn import MRNDatasetMapper, load_mrn_json, read_mrn_image, register_mrn_dataset
from wssis_d2.mrn.refine import refine_image_annotations
from wssis_d2.mrn.samples import (
    make_mrn_sample_jsons,
    pair_mrn_samples,
    split_image_ids_holdout,
)
from wssis_d2.mrn.synthetic import make_corrupted_pseudo_json

CPU_CFG = os.path.join(os.path.dirname(__file__), "..", "configs", "MRN", "MRN_R18_cpu.yaml")



def _cfg(**mrn):
    cfg = get_cfg()
    add_wssis_config(cfg)
    cfg.merge_from_file(CPU_CFG)
    cfg.MODEL.WEIGHTS = ""
    for k, v in mrn.items():
        cfg.MODEL.MRN[k] = v
    return cfg


def _rle(mask):
    r = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    r["counts"] = r["counts"].decode("ascii")
    return r


def _square(h, w, x0, y0, x1, y1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """4 synthetic 96-px images, their GT json and a corrupted-GT pseudo json (the stand-in teacher)."""
    root = str(tmp_path_factory.mktemp("shapes"))
    gt_path = generate_shapes_dataset(root, 4, image_size=96, seed=3, split="train")
    image_root = os.path.join(root, "images")
    pseudo = make_corrupted_pseudo_json(load_json(gt_path), seed=0, image_root=image_root)
    pseudo_path = write_json_atomic(pseudo, os.path.join(root, "pseudo.json"))
    return {"root": root, "gt": gt_path, "pseudo": pseudo_path, "image_root": image_root}


# ------------------------------------------------------------------------------------------- pairing
def _hand_made():
    """Image 1 (40 x 60): two class-3 instances (ids 10, 11) and one class-7 (id 12); image 2: one
    class-3 (id 20) and a crowd class-7 (id 21)."""
    h, w = 40, 60
    gt = {
        "images": [{"id": 1, "file_name": "a.jpg", "height": h, "width": w},
                   {"id": 2, "file_name": "b.jpg", "height": h, "width": w}],
        "categories": [{"id": 3, "name": "c3"}, {"id": 7, "name": "c7"}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 3, "segmentation": _rle(_square(h, w, 2, 2, 12, 12)),
             "iscrowd": 0},
            {"id": 11, "image_id": 1, "category_id": 3,
             "segmentation": _rle(_square(h, w, 40, 20, 56, 36)), "iscrowd": 0},
            {"id": 12, "image_id": 1, "category_id": 7,
             "segmentation": _rle(_square(h, w, 20, 5, 30, 15)), "iscrowd": 0},
            {"id": 20, "image_id": 2, "category_id": 3,
             "segmentation": _rle(_square(h, w, 5, 5, 25, 25)), "iscrowd": 0},
            {"id": 21, "image_id": 2, "category_id": 7,
             "segmentation": _rle(_square(h, w, 30, 5, 50, 25)), "iscrowd": 1},
        ],
    }

    def ann(i, image_id, cat, box, point, src):
        return {"id": i, "image_id": image_id, "category_id": cat, "segmentation": _rle(_square(h, w, *box)),
                "point": point, "point_ann_id": src, "score": 0.9, "level": 1}

    pseudo = {
        "images": gt["images"],
        "categories": gt["categories"],
        "annotations": [
            ann(1, 1, 3, (3, 3, 12, 12), [7.5, 7.5], 10),      # by id
            ann(2, 1, 3, (38, 18, 56, 36), [47.5, 27.5], -1),  # nearest class-3 point: id 11
            ann(3, 1, 3, (2, 2, 14, 10), [9.5, 9.5], -1),      # nearest class-3 point: id 10
            ann(4, 1, 7, (20, 5, 30, 15), [25.5, 10.5], -1),   # only class-7 instance: id 12
            ann(5, 2, 7, (30, 5, 50, 25), [40.5, 15.5], -1),   # only a crowd of class 7: unmatched
            ann(6, 2, 3, (5, 5, 25, 25), [15.5, 15.5], 20),    # by id, exact
        ],
    }
    return gt, pseudo


def test_pairing_by_point_ann_id_and_nearest_point():
    gt, pseudo = _hand_made()
    samples, stats = pair_mrn_samples([pseudo, pseudo], gt)  # two "checkpoints"
    assert stats == {"num_pseudo": 12, "num_samples": 10, "by_point_ann_id": 4, "by_nearest": 6,
                     "unmatched": 2, "mean_iou": pytest.approx(np.mean([s["iou"] for s in samples]), abs=1e-4)}
    first = samples[:5]
    assert [s["gt_ann_id"] for s in first] == [10, 11, 10, 12, 20]
    assert [s["match"] for s in first] == ["point_ann_id", "nearest", "nearest", "nearest", "point_ann_id"]
    assert [s["source"] for s in samples] == [0] * 5 + [1] * 5
    assert samples[4]["iou"] == 1.0 and 0 < samples[0]["iou"] < 1
    assert samples[0]["gt_segmentation"] == gt["annotations"][0]["segmentation"]
    assert samples[0]["segmentation"] == pseudo["annotations"][0]["segmentation"]


def test_pairing_refuses_inconsistent_files():
    gt, pseudo = _hand_made()
    pseudo["annotations"][0]["point_ann_id"] = 20  # an annotation of image 2
    with pytest.raises(ValueError, match="belongs to image 2"):
        pair_mrn_samples([pseudo], gt)
    pseudo["annotations"][0]["point_ann_id"] = 999
    with pytest.raises(ValueError, match="not in"):
        pair_mrn_samples([pseudo], gt)
    gt2, pseudo2 = _hand_made()
    pseudo2["categories"] = pseudo2["categories"][:1]
    with pytest.raises(ValueError, match="categories"):
        pair_mrn_samples([pseudo2], gt2)


def test_holdout_split_is_by_image_and_seeded():
    ids = list(range(100, 130))
    tr, va = split_image_ids_holdout(ids, 0.2, seed=1)
    assert len(va) == 6 and not set(tr) & set(va) and sorted(tr + va) == ids
    assert (tr, va) == split_image_ids_holdout(ids[::-1], 0.2, seed=1)
    assert va != split_image_ids_holdout(ids, 0.2, seed=2)[1]


def test_sample_jsons_and_registration(shapes, tmp_path):
    out = make_mrn_sample_jsons([shapes["pseudo"], shapes["pseudo"]], shapes["gt"], val_fraction=0.25, seed=0)
    tr, va = out["train"], out["val"]
    assert len(va["images"]) == 1 and len(tr["images"]) == 3
    n_pseudo = len(load_json(shapes["pseudo"])["annotations"])
    assert len(tr["annotations"]) + len(va["annotations"]) == 2 * n_pseudo  # N x M samples
    assert tr["info"]["image_root"] == os.path.abspath(shapes["image_root"])
    assert {s["image_id"] for s in va["annotations"]} == {va["images"][0]["id"]}

    path = write_json_atomic(tr, str(tmp_path / "mrn_train.json"))
    register_mrn_dataset("_test_mrn_reg_train", path)
    dicts = DatasetCatalog.get("_test_mrn_reg_train")
    assert len(dicts) == len(tr["annotations"])  # one dataset dict per sample
    meta = MetadataCatalog.get("_test_mrn_reg_train")
    assert meta.evaluator_type == "mrn"
    assert meta.thing_dataset_id_to_contiguous_id == contiguous_category_map(tr["categories"])
    assert meta.thing_classes == ["circle", "ring", "rectangle", "cross", "l_shape", "triangle"]
    d = dicts[0]
    assert os.path.isfile(d["file_name"]) and len(d["annotations"]) == 1
    a, s = d["annotations"][0], tr["annotations"][0]
    assert a["category_id"] == meta.thing_dataset_id_to_contiguous_id[s["category_id"]]
    DatasetCatalog.remove("_test_mrn_reg_train")
    MetadataCatalog.remove("_test_mrn_reg_train")


# -------------------------------------------------------------------------------- mapper vs refinement
def test_training_mapper_equals_refinement_inputs(shapes, tmp_path, one_thread):
    """Same instance, same box scale: the training mapper's crop, heatmap (every channel) and coarse
    mask equal what the refinement stage feeds the network, or all three its mirror image (the default
    horizontal flip), class index 0 included."""
    cfg = _cfg(TRAIN_BOX_SCALE_RANGE=(2.0, 2.0), BOX_SCALE=2.0, REFINE_BATCH_SIZE=64)
    assert cfg.INPUT.RANDOM_FLIP == "horizontal"
    model = build_model(cfg).eval()
    mapper = MRNDatasetMapper(cfg, is_train=True)

    pseudo = load_json(shapes["pseudo"])
    samples = make_mrn_sample_jsons([shapes["pseudo"]], shapes["gt"])["train"]
    path = write_json_atomic(samples, str(tmp_path / "s.json"))
    dicts = load_mrn_json(path)
    id_map = contiguous_category_map(pseudo["categories"])
    assert len(dicts) == len(pseudo["annotations"])

    seen = []
    orig = model.predict

    def spy(images, heatmaps, coarse_masks):
        seen.append((images, heatmaps, coarse_masks))
        return orig(images, heatmaps, coarse_masks)

    model.predict = spy
    classes_checked, flips = set(), set()
    torch.manual_seed(0)
    for img in pseudo["images"]:
        idx = [i for i, a in enumerate(pseudo["annotations"]) if a["image_id"] == img["id"]]
        anns = [pseudo["annotations"][i] for i in idx]
        seen.clear()
        image = read_mrn_image(os.path.join(shapes["image_root"], img["file_name"]), cfg.INPUT.FORMAT)
        refine_image_annotations(model, image, anns, id_map)
        (r_img, r_heat, r_coarse), = seen
        for k, i in enumerate(idx):
            out = mapper(dicts[i])
            c = dicts[i]["annotations"][0]["category_id"]
            assert c == id_map[anns[k]["category_id"]]
            heat = model.batch_heatmaps([out])[0]
            flipped = not torch.equal(out["image"], r_img[k])
            mirror = (lambda t: t.flip(-1)) if flipped else (lambda t: t)
            assert torch.equal(out["image"], mirror(r_img[k]))
            assert torch.equal(heat, mirror(r_heat[k]))
            assert torch.equal(out["coarse_mask"], mirror(r_coarse[k]))
            flips.add(flipped)
            assert heat[c + 1].max() > 0.5 and torch.equal(heat[c + 1], heat[0])  # never zeroed
            assert heat[[j for j in range(heat.shape[0]) if j not in (0, c + 1)]].abs().max() == 0
            classes_checked.add(c)
    assert 0 in classes_checked and len(classes_checked) >= 3
    assert flips == {True, False}


def test_mapper_targets_random_scale_and_flip(shapes, tmp_path):
    cfg = _cfg()
    samples = make_mrn_sample_jsons([shapes["pseudo"]], shapes["gt"])["train"]
    d = load_mrn_json(write_json_atomic(samples, str(tmp_path / "s.json")))[0]
    s = cfg.MODEL.MRN.CROP_SIZE

    mapper = MRNDatasetMapper(cfg, is_train=True)
    assert mapper.box_scale == (1.0, 2.0) and mapper.flip_dim == -1
    torch.manual_seed(5)
    a = mapper(d)
    torch.manual_seed(5)
    b = mapper(d)
    for k in ("image", "heatmap", "coarse_mask", "gt_mask", "crop_box"):
        assert torch.equal(a[k], b[k])  # seeded: reproducible
    assert a["image"].shape == (3, s, s) and a["heatmap"].shape == (1, s, s)
    assert a["gt_mask"].shape == (s, s) and a["gt_mask"].dtype == torch.bool
    assert a["classes"].shape == () and a["classes"].dtype == torch.long

    cfg_nf = cfg.clone()
    cfg_nf.INPUT.RANDOM_FLIP = "none"
    plain = MRNDatasetMapper(cfg_nf, is_train=True)
    flips = set()
    for seed in range(8):
        torch.manual_seed(seed)
        f = mapper(d)
        torch.manual_seed(seed)
        p = plain(d)
        assert torch.equal(f["crop_box"], p["crop_box"])  # same scale draw
        flipped = not torch.equal(f["image"], p["image"])
        for k in ("image", "heatmap", "coarse_mask", "gt_mask"):
            assert torch.equal(f[k], p[k].flip(-1) if flipped else p[k])
        flips.add(flipped)
    assert flips == {True, False}

    # the target is the GT mask cropped with the same box; inference keeps the annotations
    gt = torch.from_numpy(mask_util.decode(_bytes(d["annotations"][0]["gt_segmentation"])).astype(bool))
    torch.manual_seed(0)
    p = plain(d)
    assert torch.equal(p["gt_mask"], BitMasks(gt[None]).crop_and_resize(p["crop_box"][None], s)[0])
    test = MRNDatasetMapper(cfg, is_train=False)
    t = test(d)
    assert test.box_scale == 2.0 and "annotations" in t


def _bytes(rle):
    return {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
