"""WSSISSOLOv2 on point images: one row per valid point, output-pixel points, modes, size-oracle sizes."""
import os

import pytest
import torch

from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.structures import Instances

from wssis_d2 import add_wssis_config
from wssis_d2.modeling.point_inference import (
    PointLevelDecoder,
    ScoreThresholdDecoder,
    build_point_decoder,
)

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "CPU", "SOLOv2_tiny.yaml")
H, W = 96, 128  # input image
OH, OW = 192, 256  # output (original) image


def _cfg(**wssis):
    cfg = get_cfg()
    add_wssis_config(cfg)
    cfg.merge_from_file(CONFIG)
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.DEVICE = "cpu"
    for k, v in wssis.items():
        setattr(cfg.MODEL.WSSIS, k, v)
    return cfg


pytestmark = pytest.mark.usefixtures("one_thread_module")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_model(_cfg()).eval()
    with torch.no_grad():
        # Every cell's kernel = +1 on every channel and mask features >= 0 with a positive offset: every
        # mask covers (almost) the whole image, so no point is left without a mask by chance.
        m.ins_head.kernel_pred.weight.zero_()
        m.ins_head.kernel_pred.bias.fill_(1.0)
        m.mask_head.out.norm.bias.fill_(1.0)
        m.ins_head.cate_pred.bias.fill_(2.0)
    return m


@pytest.fixture
def decoder(model):
    saved = model.point_decoder
    yield lambda d: setattr(model, "point_decoder", d)
    model.point_decoder = saved


def _points(xy, classes, valid=None, ids=None, sizes=None):
    inst = Instances((H, W))
    inst.gt_points = torch.tensor(xy, dtype=torch.float32).reshape(-1, 2)
    inst.gt_classes = torch.tensor(classes, dtype=torch.long)
    inst.gt_point_valid = torch.tensor(valid if valid is not None else [True] * len(classes))
    if ids is not None:
        inst.gt_point_ids = torch.tensor(ids, dtype=torch.long)
    if sizes is not None:
        inst.gt_sizes = torch.tensor(sizes, dtype=torch.float32)
    return inst


def _image(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 255, (3, H, W), dtype=torch.uint8, generator=g)


def _run(model, points, with_plain=False):
    x = {"image": _image(), "height": OH, "width": OW, "point_instances": points}
    inputs = [x, {"image": _image(), "height": OH, "width": OW}] if with_plain else [x]
    with torch.no_grad():
        return model(inputs)


POINTS = [[10.5, 20.5], [100.5, 80.5], [127.9, 95.9], [130.0, 5.0], [10.6, 20.4]]
CLASSES = [0, 1, 2, 0, 0]
VALID = [True, True, True, False, True]
IDS = [11, 12, 13, 14, 15]


def test_point_mode_one_row_per_valid_point(model):
    out = _run(model, _points(POINTS, CLASSES, VALID, IDS), with_plain=True)
    inst, stats = out[0]["instances"], out[0]["point_stats"]
    assert inst.image_size == (OH, OW)
    assert len(inst) == 4, "one row per valid point (the invalid one gets no mask)"
    assert stats == {"num_points": 5, "num_invalid_points": 1, "num_points_without_mask": 1,
                     "num_collisions": 1, "num_cross_class_collisions": 0, "num_points_capped": 0,
                     "num_points_retried": 0, "num_points_rescued": 0}
    assert inst.point_ids.tolist() == [11, 12, 13, 15]
    valid_xy = torch.tensor([p for p, v in zip(POINTS, VALID) if v])
    torch.testing.assert_close(inst.pred_points, valid_xy * torch.tensor([OW / W, OH / H]))
    assert inst.pred_classes.tolist() == [0, 1, 2, 0]
    assert inst.pred_masks.dtype == torch.bool and tuple(inst.pred_masks.shape) == (4, OH, OW)
    assert all(0 <= lv < 5 for lv in inst.pred_levels.tolist())
    assert ((inst.scores > 0) & (inst.scores <= 1)).all()
    # points 0 and 4 share every cell and class: each keeps its own row and its own (level, cell)
    # (COLLISION_RULE "reassign": point 4 is farther from the cell centre and moves to another level)
    assert inst.pred_levels[0] != inst.pred_levels[3]
    # boxes are the masks' boxes, never the points
    ys, xs = torch.nonzero(inst.pred_masks[1], as_tuple=True)
    assert inst.pred_boxes.tensor[1].tolist() == [xs.min().item(), ys.min().item(), xs.max().item() + 1,
                                                  ys.max().item() + 1]
    # an image without points gets ordinary inference
    assert not out[1]["instances"].has("pred_points") and "point_stats" not in out[1]


def test_point_ids_default_to_minus_one_and_no_points(model):
    out = _run(model, _points(POINTS[:2], CLASSES[:2]))[0]
    assert out["instances"].point_ids.tolist() == [-1, -1]
    empty = _run(model, _points([], []))[0]
    assert len(empty["instances"]) == 0 and tuple(empty["instances"].pred_points.shape) == (0, 2)
    assert empty["point_stats"]["num_points"] == 0


def test_fixed_mode_uses_the_given_level(model, decoder):
    decoder(PointLevelDecoder(_cfg(), mode="fixed", fixed_level=2))
    inst = _run(model, _points(POINTS, CLASSES, VALID, IDS))[0]["instances"]
    assert inst.pred_levels.tolist() == [2, 2, 2, 2]


def test_max_per_image_keeps_the_best(model, decoder):
    decoder(PointLevelDecoder(_cfg(), max_per_image=2))
    out = _run(model, _points(POINTS, CLASSES, VALID, IDS))[0]
    assert len(out["instances"]) == 2 and out["point_stats"]["num_points_without_mask"] == 3
    assert out["point_stats"]["num_points_capped"] == 2


def test_no_cap_by_default_300_points(model):
    """An image with 300 points (a crowd) gives 300 pseudo-labels: there is no per-image cap."""
    assert _cfg().MODEL.WSSIS.MAX_PER_IMAGE == 0
    decoder = build_point_decoder(_cfg())
    assert decoder.max_per_image == 0
    g = torch.Generator().manual_seed(1)
    xy = (torch.rand(300, 2, generator=g) * torch.tensor([W - 1.0, H - 1.0])).tolist()
    saved, model.point_decoder = model.point_decoder, decoder
    try:
        out = _run(model, _points(xy, [i % 3 for i in range(300)], ids=list(range(1, 301))))[0]
    finally:
        model.point_decoder = saved
    assert len(out["instances"]) == 300 and out["point_stats"]["num_points_capped"] == 0
    # every mask of this model covers the image: points of all classes meet in cells, counted apart
    assert out["point_stats"]["num_collisions"] > 0 and out["point_stats"]["num_cross_class_collisions"] > 0
    assert sorted(out["instances"].point_ids.tolist()) == list(range(1, 301))


def test_oracle_needs_sizes_and_follows_scale_ranges(model, decoder):
    decoder(PointLevelDecoder(_cfg(), mode="oracle_size"))
    with pytest.raises(ValueError, match="oracle_size.*true instance size"):
        _run(model, _points(POINTS, CLASSES, VALID, IDS))
    # tiny config ranges: (1, 48) (24, 96) (48, 192) (96, 384) (192, 2048): 10 -> level 0, 1000 -> level 4
    inst = _run(model, _points(POINTS, CLASSES, VALID, IDS, sizes=[10, 1000, 10, 10, 1000]))[0]["instances"]
    assert inst.pred_levels.tolist() == [0, 4, 0, 4]


def test_threshold_mode_ignores_points(model, decoder):
    decoder(ScoreThresholdDecoder(_cfg(), threshold=0.1, max_per_image=50))
    a = _run(model, _points(POINTS, CLASSES, VALID, IDS))[0]
    b = _run(model, _points(POINTS[:1], CLASSES[:1]))[0]
    ia, ib = a["instances"], b["instances"]
    assert len(ia) > 0 and len(ia) <= 50
    assert torch.equal(ia.pred_masks, ib.pred_masks) and torch.equal(ia.scores, ib.scores)
    assert (ia.scores >= 0.1).all()
    assert (ia.point_ids == -1).all() and (ia.pred_levels == -1).all()
    assert a["point_stats"]["num_points_without_mask"] is None
    # each mask's point lies on the mask (its snapped centre of mass), in output pixels
    for m, (x, y) in zip(ia.pred_masks, ia.pred_points.tolist()):
        assert m[int(y), int(x)]
    # same as ordinary inference with the threshold applied
    decoder(ScoreThresholdDecoder(_cfg(), threshold=0.5, max_per_image=50))
    c = _run(model, _points(POINTS, CLASSES))[0]["instances"]
    assert torch.equal(c.scores, ia.scores[ia.scores >= 0.5])


def test_build_point_decoder_from_config():
    assert isinstance(build_point_decoder(_cfg(PSEUDO_LABEL_MODE="threshold", THRESHOLD=0.5)), ScoreThresholdDecoder)
    d = build_point_decoder(_cfg(PSEUDO_LABEL_MODE="fixed", FIXED_LEVEL=3, NMS_IOU=-1.0))
    assert (d.mode, d.fixed_level, d.nms_iou) == ("fixed", 3, None)
    assert build_point_decoder(_cfg(NMS_IOU=0.5)).nms_iou == 0.5
    with pytest.raises(ValueError, match="PSEUDO_LABEL_MODE"):
        build_point_decoder(_cfg(PSEUDO_LABEL_MODE="best"))
