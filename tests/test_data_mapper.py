"""WSSISDatasetMapper: points follow the image under resize + flip; full images as DatasetMapper."""
import copy

import cv2
import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import transforms as T
from detectron2.structures import BitMasks

from wssis_d2 import WSSISDatasetMapper
from wssis_d2.data.point_rules import sample_point

H, W = 48, 64  # stored image
NEW_H, NEW_W = 72, 80  # after resizing (upscaling keeps every point's pixel in its mask)


def _masks():
    ring = np.zeros((H, W), np.uint8)
    cv2.circle(ring, (20, 24), 14, 1, -1)
    cv2.circle(ring, (20, 24), 7, 0, -1)
    ell = np.zeros((H, W), np.uint8)
    ell[5:40, 44:50] = 1
    ell[34:40, 36:60] = 1
    return [ring.astype(bool), ell.astype(bool)]


@pytest.fixture
def image_file(tmp_path):
    path = str(tmp_path / "img.png")
    cv2.imwrite(path, np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8))
    return path


def _mapper(is_train, flip=True):
    augs = [T.Resize((NEW_H, NEW_W))] + ([T.RandomFlip(prob=1.0, horizontal=True)] if flip else [])
    return WSSISDatasetMapper(is_train, augmentations=augs, image_format="BGR", use_instance_mask=True,
                              instance_mask_format="bitmask")


def _point_dict(image_file, rule="centroid", extra=()):
    annos = [{"id": k + 1, "category_id": k, "point_coords": [list(sample_point(m, rule, 0, k))],
              "point_labels": [1], "iscrowd": 0} for k, m in enumerate(_masks())]
    annos += list(extra)
    return {"file_name": image_file, "height": H, "width": W, "image_id": 7, "label_kind": "points",
            "annotations": annos}


@pytest.mark.parametrize("is_train", [True, False])
@pytest.mark.parametrize("rule", ["centroid", "random", "interior"])
def test_points_follow_resize_and_flip(image_file, is_train, rule):
    d = _point_dict(image_file, rule)
    original = copy.deepcopy(d)
    out = _mapper(is_train)(d)
    assert d == original, "the input dict is not modified"
    assert out["image_id"] == 7 and tuple(out["image"].shape) == (3, NEW_H, NEW_W)
    assert "instances" not in out and "annotations" not in out
    inst = out["point_instances"]
    assert inst.image_size == (NEW_H, NEW_W)
    assert inst.gt_points.dtype == torch.float32 and inst.gt_classes.dtype == torch.int64
    assert inst.gt_classes.tolist() == [0, 1] and inst.gt_point_valid.tolist() == [True, True]
    # Analytic: resize scales continuous coordinates, the flip maps x -> W' - x.
    src = np.array([a["point_coords"][0] for a in d["annotations"]])
    expected = np.stack([NEW_W - src[:, 0] * NEW_W / W, src[:, 1] * NEW_H / H], axis=1)
    np.testing.assert_allclose(inst.gt_points.numpy(), expected, rtol=0, atol=1e-4)
    # Against the transformed mask: each point stays inside its own object.
    tfm = T.TransformList([T.ResizeTransform(H, W, NEW_H, NEW_W), T.HFlipTransform(NEW_W)])
    for (x, y), mask in zip(inst.gt_points.tolist(), _masks()):
        assert tfm.apply_segmentation(mask.astype(np.uint8))[int(y), int(x)]


def test_outside_point_is_flagged_not_dropped(image_file):
    extra = [{"id": 9, "category_id": 0, "point_coords": [[-2.0, 5.0]], "point_labels": [1]}]
    inst = _mapper(True, flip=False)(_point_dict(image_file, extra=extra))["point_instances"]
    assert len(inst) == 3 and inst.gt_point_valid.tolist() == [True, True, False]


def test_click_on_the_right_or_bottom_edge_is_valid_and_gets_a_mask(image_file):
    """The image spans [0, W] x [0, H] (the point files' validation): x == W / y == H is a valid click, clamped
    into the last grid cell, and gets its pseudo-label (it used to be flagged invalid: no mask, no count)."""
    from detectron2.modeling import build_model
    from wssis_d2 import add_wssis_config
    import os
    edge = [{"id": 8, "category_id": 1, "point_coords": [[float(W), float(H)]], "point_labels": [1]},
            {"id": 9, "category_id": 0, "point_coords": [[float(W) + 0.5, 3.0]], "point_labels": [1]}]
    out = _mapper(False, flip=False)(_point_dict(image_file, extra=edge))
    inst = out["point_instances"]
    assert inst.gt_point_valid.tolist() == [True, True, True, False]  # beyond the edge: still invalid
    assert inst.gt_points[2].tolist() == [NEW_W, NEW_H]
    cfg = get_cfg()
    add_wssis_config(cfg)
    cfg.merge_from_file(os.path.join(os.path.dirname(__file__), "..", "configs", "CPU", "SOLOv2_tiny.yaml"))
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():  # every cell's mask covers the image (see test_pseudo_inference.py's model)
        model.ins_head.kernel_pred.weight.zero_()
        model.ins_head.kernel_pred.bias.fill_(1.0)
        model.mask_head.out.norm.bias.fill_(1.0)
        result = model([out])[0]
    assert 8 in result["instances"].point_ids.tolist()
    assert result["point_stats"]["num_invalid_points"] == 1


def test_first_positive_point_and_empty_point_image(image_file):
    d = _point_dict(image_file)
    d["annotations"][0]["point_coords"] = [[1.0, 1.0], [8.0, 4.0]]
    d["annotations"][0]["point_labels"] = [0, 1]
    inst = _mapper(False, flip=False)(d)["point_instances"]
    assert inst.gt_points[0].tolist() == pytest.approx([8.0 * NEW_W / W, 4.0 * NEW_H / H])
    d["annotations"] = []
    inst = _mapper(True)(d)["point_instances"]
    assert len(inst) == 0 and tuple(inst.gt_points.shape) == (0, 2)


def _full_dict(image_file):
    from pycocotools import mask as mask_util

    annos = []
    for k, m in enumerate(_masks()):
        rle = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
        ys, xs = np.nonzero(m)
        annos.append({"category_id": k, "segmentation": rle, "iscrowd": 0, "bbox_mode": 1,
                      "bbox": [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]})
    return {"file_name": image_file, "height": H, "width": W, "image_id": 3, "annotations": annos}


def test_full_image_training_and_inference(image_file):
    out = _mapper(True)(_full_dict(image_file))
    assert "point_instances" not in out
    inst = out["instances"]
    assert isinstance(inst.gt_masks, BitMasks) and tuple(inst.gt_masks.tensor.shape) == (2, NEW_H, NEW_W)
    assert inst.gt_classes.tolist() == [0, 1] and len(inst.gt_boxes) == 2
    out = _mapper(False)(_full_dict(image_file))
    assert not {"instances", "point_instances", "annotations"} & set(out)


def test_mixed_image_is_an_error(image_file):
    d = _full_dict(image_file)
    d["annotations"].append({"category_id": 0, "point_coords": [[3.5, 3.5]], "point_labels": [1]})
    with pytest.raises(ValueError, match="mixes"):
        _mapper(True)(d)


def test_crop_is_refused():
    with pytest.raises(ValueError, match="crop"):
        WSSISDatasetMapper(True, augmentations=[T.RandomCrop("absolute", (10, 10))], image_format="BGR")
    cfg = get_cfg()
    cfg.INPUT.CROP.ENABLED = True
    with pytest.raises(ValueError, match="INPUT.CROP.ENABLED"):
        WSSISDatasetMapper(cfg, True)
    cfg.INPUT.CROP.ENABLED = False
    mapper = WSSISDatasetMapper(cfg, False)
    assert mapper.instance_mask_format == cfg.INPUT.MASK_FORMAT and not mapper.is_train
