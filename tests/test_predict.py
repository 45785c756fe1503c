"""Click-to-mask (issue 21): PointPredictor and tools/predict.py with a tiny SOLOv2 trained here.

The predictor's masks equal the pseudo-label export's (train_net.py --eval-only, PseudoLabelTrainer) for the
same images, clicks and weights, resized (non-square images, test size 120) and on tiles; the MaskRefineNet
refinement equals the pipeline's refinement of the export; bad input gives one WSSISInputError; the CLI on
a folder of labelme click files writes the COCO json, review files and overlays; a killed folder run
resumes without duplicates.
"""
import json
import os
import random
import sys

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch

from detectron2.config import get_cfg
from detectron2.engine import default_argument_parser

from conftest import REPO, load_script, load_train_net, saved_catalogs
from conftest import tiny_model_weights
from test_resume_kill import _kill_midway, _lines, _no_partial_files, _run
from wssis_d2 import PointPredictor, add_wssis_config
from wssis_d2.checkpoint_check import CheckpointMismatchError
from wssis_d2.data.categories import contiguous_category_map
from wssis_d2.data.coco_masks import decode_segmentation
from wssis_d2.data.images import read_image
from wssis_d2.data.point_rules import centroid_point
from wssis_d2.formats.label_image_export import mask_path
from wssis_d2.formats.label_images import read_label_file
from wssis_d2.mrn.refine import refine_pseudo_labels
from wssis_d2.utils.errors import WSSISInputError

pytestmark = pytest.mark.usefixtures("one_thread_module")

SOLO_CFG = os.path.join(REPO, "configs", "CPU", "SOLOv2_tiny.yaml")
PSEUDO_CFG = os.path.join(REPO, "configs", "pseudo", "SOLOv2_tiny_APS.yaml")
MRN_CFG = os.path.join(REPO, "configs", "MRN", "MRN_R18_cpu.yaml")
NUM_IMAGES = 12
RESIZED = ["INPUT.MIN_SIZE_TEST", "120", "INPUT.MAX_SIZE_TEST", "200"]  # images are 80 x 112: scale 1.5
TILED = ["INPUT.TILE.SIZE", "64", "INPUT.TILE.OVERLAP", "16.0"]
CAPPED = RESIZED + ["MODEL.WSSIS.MAX_PER_IMAGE", "2"]  # clicks beyond 2 per image get no mask


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """12 shape images (80 x 112), a tiny SOLOv2 trained 40 iterations on them, their clicks (the mask
    centroids) as a point-label json and as labelme files."""
    from wssis_d2.data.synthetic import generate_shapes_dataset

    root = tmp_path_factory.mktemp("predict")
    gt = generate_shapes_dataset(str(root / "shapes"), NUM_IMAGES, image_size=(80, 112), seed=5, max_instances=4)
    images = str(root / "shapes" / "images")
    args = default_argument_parser().parse_args([
        "--config-file", SOLO_CFG, "OUTPUT_DIR", str(root / "train"),
        "DATASETS.WSSIS_REGISTER", f"[['predict_train', '{gt}', '{images}']]", "DATASETS.TRAIN", "('predict_train',)",
        "DATASETS.TEST", "()", "INPUT.MIN_SIZE_TRAIN", "(80,)", "INPUT.MAX_SIZE_TRAIN", "112",
        "INPUT.MASK_FORMAT", "bitmask", "SOLVER.MAX_ITER", "40", "SOLVER.WARMUP_ITERS", "2", "SOLVER.STEPS", "()",
        "SEED", "0"])
    torch.manual_seed(0)
    with saved_catalogs():
        load_train_net().main(args)
    coco = json.load(open(gt))
    points = {"images": coco["images"], "categories": coco["categories"], "annotations": []}
    names = {c["id"]: c["name"] for c in coco["categories"]}
    labelme = root / "labelme_clicks"
    labelme.mkdir()
    for img in coco["images"]:
        shapes = []
        for a in (a for a in coco["annotations"] if a["image_id"] == img["id"]):
            x, y = (round(v, 2) for v in centroid_point(decode_segmentation(a["segmentation"], img["height"],
                                                                            img["width"])))
            points["annotations"].append({"id": a["id"], "image_id": img["id"], "category_id": a["category_id"],
                                          "point_coords": [[x, y]], "point_labels": [1], "iscrowd": 0})
            shapes.append({"label": names[a["category_id"]], "points": [[x, y]], "shape_type": "point"})
        stem = os.path.splitext(img["file_name"])[0]
        json.dump({"shapes": shapes, "imagePath": os.path.relpath(os.path.join(images, img["file_name"]), labelme),
                   "imageHeight": img["height"], "imageWidth": img["width"]}, open(labelme / f"{stem}.json", "w"))
    points_json = root / "points.json"
    points_json.write_text(json.dumps(points))
    return {"root": root, "gt": gt, "images": images, "weights": str(root / "train" / "model_final.pth"),
            "points": str(points_json), "labelme": str(labelme), "coco": points}


def _cfg(trained, *opts, config=PSEUDO_CFG):
    cfg = get_cfg()
    add_wssis_config(cfg)
    cfg.merge_from_file(config)
    cfg.merge_from_list(["MODEL.WEIGHTS", trained["weights"], *opts])
    return cfg


def _export(trained, out_dir, opts):
    """The pseudo-label export of the clicks (train_net.py --eval-only) -> its json."""
    out = str(out_dir / "pseudo.json")
    args = default_argument_parser().parse_args([
        "--config-file", PSEUDO_CFG, "--eval-only", "MODEL.WEIGHTS", trained["weights"], "OUTPUT_DIR", str(out_dir),
        "DATASETS.WSSIS_REGISTER", f"[['predict_points', '{trained['points']}', '{trained['images']}']]",
        "DATASETS.TEST", "('predict_points',)", "MODEL.WSSIS.EXPORT_PATH", out, *opts])
    with saved_catalogs():
        load_train_net().main(args)
    return out


def _clicks(points, image_id):
    id_map = contiguous_category_map(points["categories"])
    anns = [a for a in points["annotations"] if a["image_id"] == image_id]
    return ([a["point_coords"][0] for a in anns], [id_map[a["category_id"]] for a in anns], [a["id"] for a in anns])


def _assert_equal_to_export(predictor, trained, export_json, refined=False):
    export = json.load(open(export_json))
    by_point = {a["point_ann_id"]: a for a in export["annotations"]}
    num_masks = num_refined = num_without = 0
    for img in trained["coco"]["images"]:
        image = read_image(os.path.join(trained["images"], img["file_name"]), "BGR")
        pts, classes, ids = _clicks(trained["coco"], img["id"])
        out = predictor(image, pts, classes)
        assert len(out) == len(pts) and out.image_size == (img["height"], img["width"])
        assert np.allclose(out.pred_points.numpy(), pts) and out.pred_classes.tolist() == classes  # click order
        for k, ann_id in enumerate(ids):
            if ann_id not in by_point:
                num_without += 1
                assert out.no_mask[k] and not out.pred_masks[k].any()
                assert out.scores[k] == 0 and out.pred_levels[k] == -1
                continue
            ann = by_point[ann_id]
            num_masks += 1
            mask = decode_segmentation(ann["segmentation"], img["height"], img["width"])
            assert not out.no_mask[k]
            assert np.array_equal(out.pred_masks[k].numpy(), mask), (img["file_name"], k)
            if refined:
                assert bool(out.refined[k]) == ann["refined"]
                num_refined += ann["refined"]
            else:
                assert float(out.scores[k]) == pytest.approx(ann["score"], abs=1e-6)
                assert int(out.pred_levels[k]) == ann["level"]
            x, y, w, h = ann["bbox"]
            assert out.pred_boxes.tensor[k].tolist() == pytest.approx([x, y, x + w, y + h])
    assert num_masks == len(export["annotations"]) > 0
    assert num_without == export["info"]["num_points_without_mask"]
    return num_refined


@pytest.mark.parametrize("opts", [RESIZED, TILED, CAPPED], ids=["resized", "tiled", "capped"])
def test_predictor_masks_equal_the_export(trained, tmp_path, opts):
    export = _export(trained, tmp_path, opts)
    predictor = PointPredictor(_cfg(trained, *opts))
    if opts is TILED:
        assert predictor.model.tiler is not None and not predictor.mapper.augmentations.augs  # the model tiles
    _assert_equal_to_export(predictor, trained, export)
    if opts is CAPPED:
        assert json.load(open(export))["info"]["num_points_capped"] > 0


def test_refinement_equals_the_pipelines(trained, tmp_path):
    """PointPredictor(cfg, mrn_cfg) = the export refined by refine_pseudo_labels (MaskRefineNet in RGB, the
    SOLOv2 in BGR: the image is converted as the refinement stage reads it)."""
    mrn_weights = tiny_model_weights("configs/MRN/MRN_R18_cpu.yaml", str(tmp_path / "mrn.pth"),
                                      "MODEL.MRN.CROP_SIZE", "32")
    export = _export(trained, tmp_path, RESIZED)
    mrn_cfg = get_cfg()
    add_wssis_config(mrn_cfg)
    mrn_cfg.merge_from_file(MRN_CFG)
    mrn_cfg.merge_from_list(["MODEL.WEIGHTS", mrn_weights, "MODEL.MRN.CROP_SIZE", "32"])
    predictor = PointPredictor(_cfg(trained, *RESIZED), mrn_cfg)
    refined = str(tmp_path / "refined.json")
    refine_pseudo_labels(predictor.mrn, export, refined, image_root=trained["images"], image_format="RGB")
    assert _assert_equal_to_export(predictor, trained, refined, refined=True) > 0  # masks the MRN changed
    # keep_coarse (the review's teacher-vs-MaskRefineNet flag): the masks before refinement, i.e. the export's
    img = trained["coco"]["images"][0]
    pts, classes, ids = _clicks(trained["coco"], img["id"])
    out = predictor.predict(read_image(os.path.join(trained["images"], img["file_name"]), "BGR"), pts, classes,
                            keep_coarse=True)["instances"]
    by_point = {a["point_ann_id"]: a for a in json.load(open(export))["annotations"]}
    for k, ann_id in enumerate(ids):
        if ann_id in by_point:
            mask = decode_segmentation(by_point[ann_id]["segmentation"], img["height"], img["width"])
            assert np.array_equal(out.coarse_masks[k].numpy(), mask)


def test_one_clear_error_per_bad_input(trained, tmp_path):
    predictor = PointPredictor(_cfg(trained, *RESIZED))
    img = trained["coco"]["images"][0]
    image = read_image(os.path.join(trained["images"], img["file_name"]), "BGR")
    h, w = image.shape[:2]
    cases = [
        ((image, [[w + 0.5, 3.0]], [0]), "outside the image"),
        ((image, [[5.0, -1.0]], [0]), "outside the image"),
        ((image, [[5.0, 5.0]], [6]), "not a class of the model"),
        ((image, [[5.0, 5.0]], ["cat"]), "not a class of the model"),
        ((image, [[5.0, 5.0]], [0, 1]), "one class per click"),
        ((image[:, :, 0], [[5.0, 5.0]], [0]), "grayscale"),
        ((image.astype(np.float32), [[5.0, 5.0]], [0]), "dtype float32"),
        ((np.dstack([image, image[:, :, :1]]), [[5.0, 5.0]], [0]), r"shape \(80, 112, 4\)"),
        ((torch.from_numpy(image.copy()), [[5.0, 5.0]], [0]), "numpy array"),
    ]
    for call, message in cases:
        with pytest.raises(WSSISInputError, match=message):
            predictor(*call)
    mrn = tiny_model_weights("configs/MRN/MRN_R18_cpu.yaml", str(tmp_path / "mrn.pth"))
    with pytest.raises(CheckpointMismatchError, match="MaskRefineNet checkpoint"):
        PointPredictor(_cfg(trained, "MODEL.WEIGHTS", mrn))
    with pytest.raises(CheckpointMismatchError, match="other shapes"):
        PointPredictor(_cfg(trained, "MODEL.SOLOV2.NUM_CLASSES", "3"))
    for mode in ("threshold", "oracle_size"):
        with pytest.raises(WSSISInputError, match=f"PSEUDO_LABEL_MODE '{mode}'"):
            PointPredictor(_cfg(trained, "MODEL.WSSIS.PSEUDO_LABEL_MODE", mode))
    assert len(predictor(image, np.zeros((0, 2)), [])) == 0  # no click: no row, no error
    # the image spans [0, W] x [0, H]: clicks on the right / bottom edge are accepted (the export's rule)
    edge = predictor.predict(image, [[w, h], [w, 3.0], [0.0, h]], [0, 1, 2])
    assert len(edge["instances"]) == 3 and edge["point_stats"]["num_invalid_points"] == 0


def test_one_output_per_click_even_for_duplicates_and_fixed_mode(trained):
    """Two clicks on one object and a fixed level: still one row per click, in click order."""
    predictor = PointPredictor(_cfg(trained, "MODEL.WSSIS.PSEUDO_LABEL_MODE", "fixed", "MODEL.WSSIS.FIXED_LEVEL", "2",
                                    *TILED))
    img = trained["coco"]["images"][1]
    image = read_image(os.path.join(trained["images"], img["file_name"]), "BGR")
    pts, classes, _ = _clicks(trained["coco"], img["id"])
    pts, classes = pts[::-1] + [pts[0]], classes[::-1] + [classes[0]]
    out = predictor(image, pts, classes)
    assert len(out) == len(pts) and np.allclose(out.pred_points.numpy(), pts)
    assert set(out.pred_levels[~out.no_mask].tolist()) <= {2}


def _predict_cli():
    return load_script("tools/predict.py", "predict_script")


def _predict_folder(trained, out, *extra):
    """tools/predict.py on the labelme click folder, categories from the GT json, inputs resized."""
    return _predict_cli().main([
        "--config-file", SOLO_CFG, "--weights", trained["weights"], "--images", trained["images"],
        "--clicks", trained["labelme"], "--format", "labelme", "--categories", trained["gt"], "--output", str(out),
        *extra, "--no-progress", *RESIZED])


def test_cli_on_a_labelme_folder(trained, tmp_path):
    out = tmp_path / "pred"
    res = _predict_folder(trained, out, "--export", "labelme", "--overlay")
    pred = json.load(open(out / "predictions.json"))
    info = pred["info"]
    num_clicks = len(trained["coco"]["annotations"])
    assert info["num_points"] == num_clicks == len(pred["annotations"]) + len(info["clicks_without_mask"])
    assert pred["categories"] == json.load(open(trained["gt"]))["categories"]
    assert [im["file_name"] for im in pred["images"]] == sorted(im["file_name"] for im in trained["coco"]["images"])
    for a in pred["annotations"]:
        assert {"segmentation", "bbox", "area", "score", "point", "level", "point_ann_id"} <= set(a)
        assert mask_util.area(a["segmentation"]) == a["area"] > 0
    review = sorted(os.listdir(out / "labelme"))
    overlays = sorted(os.listdir(out / "overlays"))
    stems = sorted(os.path.splitext(im["file_name"])[0] for im in trained["coco"]["images"])
    assert review == [s + ".json" for s in stems] and overlays == [s + ".png" for s in stems]
    labelme = json.load(open(out / "labelme" / review[0]))
    assert labelme["shapes"] and os.path.isfile(os.path.join(out / "labelme", labelme["imagePath"]))
    assert {s["label"] for s in labelme["shapes"]} <= {c["name"] for c in pred["categories"]}
    assert res["num_masks"] == len(pred["annotations"]) and res["num_resumed"] == 0
    _no_partial_files(str(out))


def test_cli_one_image_with_class_indices(trained, tmp_path):
    img = trained["coco"]["images"][0]
    path = os.path.join(trained["images"], img["file_name"])
    pts, classes, _ = _clicks(trained["coco"], img["id"])
    spec = ";".join(f"{x},{y},{c}" for (x, y), c in zip(pts, classes))
    cli = _predict_cli()
    argv = ["--config-file", SOLO_CFG, "--weights", trained["weights"], "--image", path, "--output", str(tmp_path),
            "--no-progress", *RESIZED]
    cli.main(argv[:6] + ["--points", spec, "--export", "label-images", "--layout", "stardist"] + argv[6:])
    pred = json.load(open(tmp_path / "predictions.json"))
    assert pred["categories"] == [{"id": i, "name": str(i)} for i in range(6)]  # class indices
    assert len(pred["annotations"]) + len(pred["info"]["clicks_without_mask"]) == len(pts)
    rel = mask_path(img["file_name"], "stardist")  # StarDist layout: masks/<the image's own name>
    lab = read_label_file(str(tmp_path / "label-images" / rel))
    assert lab.max() == len(pred["annotations"]) - json.load(open(
        tmp_path / "label-images" / "label_images_info.json"))["counts"]["objects lost to overlaps"]
    rows = open(tmp_path / "label-images" / (os.path.splitext(rel)[0] + "_objects.csv")).read().splitlines()
    assert len(rows) == 1 + len(pts)  # every click has its row, those without a mask too (label 0)
    with pytest.raises(WSSISInputError, match="--polygons does not apply to --format/--export label-images"):
        cli.main(argv[:6] + ["--points", spec, "--export", "label-images", "--polygons"] + argv[6:])
    assert all(a["category_id"] == classes[a["point_ann_id"] - 1] for a in pred["annotations"])  # clicks 1..N
    with pytest.raises(WSSISInputError, match="unknown label 'circle'"):
        cli.main(argv[:6] + ["--points", "5,5,circle"] + argv[6:])
    with pytest.raises(WSSISInputError, match="is outside its image"):
        cli.main(argv[:6] + ["--points", "500,5,0"] + argv[6:])
    with pytest.raises(WSSISInputError, match="either --image and --points"):
        cli.main(argv[:6] + argv[6:])
    # an interrupted run of other settings is not mixed in: refused, or discarded with --overwrite
    part = tmp_path / "predictions.json.part.jsonl"
    part.write_text(json.dumps({"file_name": img["file_name"], "run": {"weights": "other.pth"}}) + "\n")
    with pytest.raises(WSSISInputError, match="predictions of another run"):
        cli.main(argv[:6] + ["--points", spec] + argv[6:])
    assert cli.main(argv[:6] + ["--points", spec, "--overwrite"] + argv[6:])["num_resumed"] == 0


@pytest.mark.slow  # `make test-slow`: a CLI process started and killed
def test_killed_folder_run_resumes_without_duplicates(trained, tmp_path):
    out = tmp_path / "pred"
    cmd = [sys.executable, "tools/predict.py", "--config-file", SOLO_CFG, "--weights", trained["weights"],
           "--images", trained["images"], "--clicks", trained["points"], "--format", "points-json",
           "--output", str(out), "--overlay", "--no-progress", *RESIZED]
    part = str(out / "predictions.json.part.jsonl")
    _kill_midway(cmd, lambda: _lines(part, random.randint(1, NUM_IMAGES // 2)),
                 lambda: os.path.exists(out / "predictions.json"), str(out))
    done = open(part, "rb").read().count(b"\n")  # complete lines: finished images
    res = _run(cmd)
    assert f"{done} done earlier" in res.stderr + res.stdout  # resumed, not restarted
    pred = json.load(open(out / "predictions.json"))
    assert pred["info"]["num_images_processed"] == NUM_IMAGES
    assert pred["info"]["num_points"] == len(trained["coco"]["annotations"])  # every click once
    keys = [a["point_ann_id"] for a in pred["annotations"] + pred["info"]["clicks_without_mask"]]
    assert sorted(keys) == sorted(a["id"] for a in trained["coco"]["annotations"])
    assert [a["id"] for a in pred["annotations"]] == list(range(1, len(pred["annotations"]) + 1))
    _no_partial_files(str(out))
    # the same masks as one uninterrupted run
    fresh = tmp_path / "fresh"
    _run(cmd[:cmd.index("--output") + 1] + [str(fresh)] + cmd[cmd.index("--output") + 2:])
    assert pred["annotations"] == json.load(open(fresh / "predictions.json"))["annotations"]


def test_cli_review_ranks_every_click_and_exports_flags(trained, tmp_path):
    out = tmp_path / "pred"
    res = _predict_folder(trained, out, "--export", "cvat", "--review")
    review = json.load(open(out / "review" / "review.json"))
    num_clicks = len(trained["coco"]["annotations"])
    assert len(review["clicks"]) == num_clicks and review["summary"]["num_clicks"] == num_clicks
    assert [im["rank"] for im in review["images"]] == list(range(1, len(review["images"]) + 1))
    assert review["info"]["areas_from"] == "--categories json"
    risks = [c["risk"] for c in review["clicks"]]
    assert risks == sorted(risks, reverse=True) and all(0 <= r <= 1 for r in risks)
    without = {c["point_ann_id"] for c in json.load(open(out / "predictions.json"))["info"]["clicks_without_mask"]}
    assert {c["point_ann_id"] for c in review["clicks"] if "fallback" in c["flags"]} == without
    # the export carries each click's risk (and the orphans as their own flagged regions)
    xml = open(res["review"]).read()
    assert xml.count('<attribute name="wssis_risk">') >= num_clicks + review["summary"]["num_orphans"]
    # the click-free pass: ordinary detections at the image size
    predictor = PointPredictor(_cfg(trained, *RESIZED))
    img = trained["coco"]["images"][0]
    plain = predictor.plain(read_image(os.path.join(trained["images"], img["file_name"]), "BGR"))
    assert plain.image_size == (img["height"], img["width"]) and plain.pred_masks.shape[1:] == (img["height"],
                                                                                                img["width"])
    _no_partial_files(str(out))
