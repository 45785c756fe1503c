"""WSSISSOLOv2 built from the tiny CPU config: forward shapes, gradients, checkpoint round trip."""
import os

import pytest
import torch

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Instances, PolygonMasks

from wssis_d2 import add_wssis_config

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "CPU", "SOLOv2_tiny.yaml")


def _cfg():
    cfg = get_cfg()
    add_wssis_config(cfg)
    cfg.merge_from_file(CONFIG)
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.DEVICE = "cpu"
    return cfg


def _inputs(h=96, w=128, polygons=False):
    img = torch.randint(0, 255, (3, h, w), dtype=torch.uint8)
    inst = Instances((h, w))
    masks = torch.zeros(2, h, w, dtype=torch.bool)
    masks[0, 10:40, 20:60] = True
    masks[1, 50:90, 70:120] = True
    if polygons:
        inst.gt_masks = PolygonMasks([[[20, 10, 60, 10, 60, 40, 20, 40]], [[70, 50, 120, 50, 120, 90, 70, 90]]])
    else:
        inst.gt_masks = BitMasks(masks)
    inst.gt_boxes = BitMasks(masks).get_bounding_boxes()
    inst.gt_classes = torch.tensor([0, 2])
    return {"image": img, "instances": inst, "height": 2 * h, "width": 2 * w}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(_cfg())


def test_head_shapes(model):
    cfg = _cfg()
    images = model.preprocess_image([_inputs()])
    heads = model.forward_heads(images)
    assert images.tensor.shape[-2:] == (96, 128)
    grids = cfg.MODEL.SOLOV2.NUM_GRIDS
    num_classes = cfg.MODEL.SOLOV2.NUM_CLASSES
    assert [tuple(c.shape) for c in heads.cate_logits] == [(1, num_classes, s, s) for s in grids]
    assert [tuple(k.shape) for k in heads.kernels] == [(1, 32, s, s) for s in grids]
    assert tuple(heads.mask_feats.shape) == (1, 32, 24, 32)


@pytest.mark.parametrize("polygons", [False, True])
def test_train_losses_and_gradients(model, polygons):
    model.train()
    losses = model([_inputs(polygons=polygons), _inputs(h=64, w=96, polygons=polygons)])
    assert set(losses) == {"loss_cate", "loss_mask"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    model.zero_grad()
    sum(losses.values()).backward()
    for name in ("ins_head.kernel_pred.weight", "ins_head.cate_pred.weight", "mask_head.out.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_train_without_instances_has_zero_mask_loss(model):
    model.train()
    x = _inputs()
    x["instances"] = x["instances"][[]]
    losses = model([x])
    assert losses["loss_mask"].item() == 0.0 and losses["loss_cate"] > 0
    # every parameter still gets a gradient: DDP (no find_unused_parameters) needs it in every process
    model.zero_grad(set_to_none=True)
    sum(losses.values()).backward()
    assert [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None] == []


def test_eval_outputs_at_requested_size(model):
    model.eval()
    # Make every cell confident so that inference has candidates to decode.
    with torch.no_grad():
        model.ins_head.cate_pred.bias.fill_(3.0)
        out = model([_inputs(), _inputs(h=64, w=96)])
    for o, (h, w) in zip(out, [(192, 256), (128, 192)]):
        inst = o["instances"]
        assert inst.image_size == (h, w)
        assert inst.pred_masks.dtype == torch.bool and inst.pred_masks.shape[1:] == (h, w)
        n = len(inst)
        assert inst.scores.shape == (n,) and inst.pred_classes.shape == (n,) and inst.pred_boxes.tensor.shape == (n, 4)
        assert n <= _cfg().MODEL.SOLOV2.MAX_PER_IMG
        assert (inst.scores[:-1] >= inst.scores[1:]).all()


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(1)
    a = build_model(_cfg())
    DetectionCheckpointer(a, save_dir=str(tmp_path)).save("ckpt")
    torch.manual_seed(2)
    b = build_model(_cfg())
    x = [_inputs()]
    a.eval()
    b.eval()
    with torch.no_grad():
        before = b.forward_heads(b.preprocess_image(x)).mask_feats
        DetectionCheckpointer(b).load(str(tmp_path / "ckpt.pth"))
        ha, hb = a.forward_heads(a.preprocess_image(x)), b.forward_heads(b.preprocess_image(x))
    assert not torch.allclose(before, ha.mask_feats)
    assert torch.equal(ha.mask_feats, hb.mask_feats)
    assert all(torch.equal(p, q) for p, q in zip(ha.cate_logits, hb.cate_logits))


def test_mismatched_level_settings_are_rejected():
    cfg = _cfg()
    cfg.MODEL.SOLOV2.NUM_GRIDS = [16, 12, 8]
    with pytest.raises(ValueError, match="one grid, stride and scale range per instance level"):
        build_model(cfg)


def test_plain_decoder_applies_point_nms_per_level(model):
    """Two neighbouring cells of one class predicting the same mask: point NMS keeps only the stronger
    one (without it both enter Matrix NMS and the duplicate survives with a decayed score)."""
    from wssis_d2.modeling.plain_inference import ImageHeads

    num_classes = model.num_classes
    e = 4
    feats = torch.full((e, 24, 32), -6.0)
    feats[0, 4:14, 6:18] = 6.0  # one object in channel 0
    cate, kern = [], []
    for s in model.num_grids:
        cate.append(torch.full((num_classes, s, s), -9.0))
        kern.append(torch.zeros(e, s, s))
    kern[1][0, 3, 3] = kern[1][0, 3, 4] = 1.0  # two neighbouring cells on level 1, the same mask
    cate[1][2, 3, 3], cate[1][2, 3, 4] = 3.0, 2.5
    heads = ImageHeads(cate, kern, feats, input_hw=(96, 128), image_hw=(96, 128), output_hw=(96, 128))
    inst = model.plain_decoder(heads)
    assert len(inst) == 1 and inst.pred_classes.tolist() == [2]
    assert inst.scores[0] == pytest.approx(torch.sigmoid(torch.tensor(3.0)).item(), abs=0.01)
    # different classes in the two cells are not suppressed by each other
    cate[1][2, 3, 4], cate[1][4, 3, 4] = -9.0, 2.5
    assert sorted(model.plain_decoder(heads).pred_classes.tolist()) == [2, 4]
