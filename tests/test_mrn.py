"""MaskRefineNet: crops, heatmaps, paste-back, model shapes, weight loading, and a small learning test."""
import math
import os
import time

import pytest
import torch
import torch.nn.functional as F

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec, paste_masks_in_image
from detectron2.modeling import build_model
from detectron2.modeling.backbone.resnet import build_resnet_backbone
from detectron2.structures import BitMasks, Boxes

from wssis_d2.config import add_wssis_config
from wssis_d2.mrn import MaskRefineNet  # noqa: F401  (registers the meta-arch)
from wssis_d2.mrn.boxes import crop_boxes, mask_boxes
from wssis_d2.mrn.heatmaps import expand_heatmap, heatmap_channels, point_heatmap
from wssis_d2.mrn.inputs import crop_and_resize, make_mrn_inputs
from wssis_d2.mrn.paste import merge_refined, paste_masks

CPU_CFG = os.path.join(os.path.dirname(__file__), "..", "configs", "MRN", "MRN_R18_cpu.yaml")
BASE_CFG = os.path.join(os.path.dirname(__file__), "..", "configs", "MRN", "Base-MRN.yaml")



def _cfg(path=CPU_CFG, **mrn):
    cfg = get_cfg()
    add_wssis_config(cfg)
    cfg.merge_from_file(path)
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    for k, v in mrn.items():
        cfg.MODEL.MRN[k] = v
    return cfg


def _ellipses(n, hw, g, centre_margin=20, axes=(8, 20)):
    """(N, H, W) bool random ellipses."""
    h, w = hw
    yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    cx = centre_margin + (w - 2 * centre_margin) * torch.rand(n, generator=g)
    cy = centre_margin + (h - 2 * centre_margin) * torch.rand(n, generator=g)
    a = axes[0] + (axes[1] - axes[0]) * torch.rand(n, generator=g)
    b = 0.75 * axes[0] + 0.75 * (axes[1] - axes[0]) * torch.rand(n, generator=g)
    th = math.pi * torch.rand(n, generator=g)
    dx, dy = xx[None] - cx[:, None, None], yy[None] - cy[:, None, None]
    c, s = th.cos()[:, None, None], th.sin()[:, None, None]
    u, v = (dx * c + dy * s) / a[:, None, None], (-dx * s + dy * c) / b[:, None, None]
    return u**2 + v**2 <= 1


def _iou(a, b):
    a, b = a.flatten(1), b.flatten(1)
    return (a & b).sum(1).float() / (a | b).sum(1).clamp(min=1).float()


def _soft_crops(masks, boxes, size):
    """(N, H, W) masks -> (N, S, S) float crops in [0, 1] (crop_and_resize of the 0/1 masks)."""
    return crop_and_resize(masks[:, None].float(), boxes, size)[:, 0]


def _centroids(masks):
    h, w = masks.shape[-2:]
    yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    m = masks.float()
    area = m.sum((1, 2))
    return torch.stack([(m * xx).sum((1, 2)) / area, (m * yy).sum((1, 2)) / area], dim=1)


# ----------------------------------------------------------------------------------- boxes / crops
def test_mask_boxes_pixel_edges_and_empty():
    m = torch.zeros(2, 10, 12, dtype=torch.bool)
    m[0, 2:5, 3:9] = True
    boxes, nonempty = mask_boxes(m)
    assert boxes[0].tolist() == [3.0, 2.0, 9.0, 5.0]
    assert boxes[1].tolist() == [0.0, 0.0, 0.0, 0.0]
    assert nonempty.tolist() == [True, False]


def test_crop_paste_round_trip_exact_on_integer_box():
    """Box on integer pixel edges resized to its own size: crop and paste-back are exact."""
    g = torch.Generator().manual_seed(1)
    h, w = 40, 50
    box = torch.tensor([[10.0, 8.0, 26.0, 24.0]])  # 16 x 16
    mask = torch.zeros(1, h, w, dtype=torch.bool)
    mask[0, 8:24, 10:26] = torch.rand(16, 16, generator=g) > 0.5
    image = torch.rand(1, 3, h, w, generator=g)

    crop = crop_and_resize(image, box, 16)
    torch.testing.assert_close(crop[0], image[0, :, 8:24, 10:26], rtol=0, atol=1e-6)
    mcrop = _soft_crops(mask, box, 16)
    torch.testing.assert_close(mcrop[0], mask[0, 8:24, 10:26].float(), rtol=0, atol=1e-6)

    pasted = paste_masks(mcrop, box, (h, w), threshold=0.5)
    assert torch.equal(pasted, mask)
    soft = paste_masks(mcrop, box, (h, w), threshold=None)
    assert soft[0, :8].abs().max() == 0 and soft[0, :, 26:].abs().max() == 0  # zeros outside the box


def test_crop_paste_round_trip_iou_at_256():
    g = torch.Generator().manual_seed(2)
    hw = (120, 150)
    masks = _ellipses(6, hw, g, centre_margin=30, axes=(6, 25))
    boxes = crop_boxes(masks, _centroids(masks), hw, 2.0)
    crops = _soft_crops(masks, boxes, 256)
    back = paste_masks(crops, boxes, hw, threshold=0.5)
    assert _iou(back, masks).min() > 0.95
    # memory chunking does not change the result
    assert torch.equal(paste_masks(crops, boxes, hw, 0.5, max_chunk_pixels=1), back)


def test_binary_crops_are_detectron2_bitmasks_crops():
    """The binary mask crop of the MRN inputs (BitMasks.crop_and_resize) is crop_and_resize >= 0.5."""
    g = torch.Generator().manual_seed(5)
    hw = (90, 110)
    masks = _ellipses(8, hw, g, centre_margin=25, axes=(5, 20))
    boxes = crop_boxes(masks, _centroids(masks), hw, 2.0)
    for size in (16, 64):
        assert torch.equal(BitMasks(masks).crop_and_resize(boxes, size), _soft_crops(masks, boxes, size) >= 0.5)


def test_paste_masks_keeps_the_box_edges_detectron2_loses():
    """paste_masks replicates the crop border up to the box edge: a full crop pastes back as exactly the
    box's pixels. detectron2's paste_masks_in_image pads with zeros, so pixels within half a crop pixel
    of the box edge fade below 0.5 and are lost; inside, both agree."""
    h, w, s = 60, 70, 8
    boxes = torch.tensor([[5.0, 4.0, 45.0, 52.0], [20.0, 10.0, 60.0, 30.0]])  # 40 x 48 and 40 x 20 px
    probs = torch.ones(2, s, s)
    ours = paste_masks(probs, boxes, (h, w), threshold=0.5)
    box_pixels = torch.zeros(2, h, w, dtype=torch.bool)
    box_pixels[0, 4:52, 5:45] = True
    box_pixels[1, 10:30, 20:60] = True
    assert torch.equal(ours, box_pixels)
    d2 = paste_masks_in_image(probs, Boxes(boxes), (h, w), threshold=0.5)
    assert (d2 & ~ours).sum() == 0  # detectron2 only loses pixels
    lost = ours & ~d2
    assert lost.sum() > 0
    # every lost pixel lies within half a crop pixel (in image pixels) of the box edge
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    for k, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        half_x, half_y = 0.5 * (x1 - x0) / s, 0.5 * (y1 - y0) / s
        near = ((xs - x0) < half_x) | ((x1 - xs) < half_x) | ((ys - y0) < half_y) | ((y1 - ys) < half_y)
        assert not (lost[k] & ~near).any()


def test_crop_boxes_contain_the_point():
    """Random masks (some empty) and points anywhere, including far outside the mask and on borders."""
    g = torch.Generator().manual_seed(3)
    h, w, n = 60, 80, 400
    masks = torch.zeros(n, h, w, dtype=torch.bool)
    x0 = torch.randint(0, w - 1, (n,), generator=g)
    y0 = torch.randint(0, h - 1, (n,), generator=g)
    x1 = x0 + 1 + (torch.rand(n, generator=g) * (w - x0)).long()
    y1 = y0 + 1 + (torch.rand(n, generator=g) * (h - y0)).long()
    xx, yy = torch.arange(w), torch.arange(h)
    masks = ((xx[None, None] >= x0[:, None, None]) & (xx[None, None] < x1[:, None, None])
             & (yy[None, :, None] >= y0[:, None, None]) & (yy[None, :, None] < y1[:, None, None]))
    masks[::7] = False  # some empty coarse masks
    pts = torch.rand(n, 2, generator=g) * torch.tensor([w, h])
    pts[:20, 0] = 0.0
    pts[20:40, 1] = float(h)
    pts[40:50] = torch.tensor([float(w), 0.0])
    boxes = crop_boxes(masks, pts, (h, w), (1.0, 2.0), generator=torch.Generator().manual_seed(33))

    assert (boxes[:, 0] <= pts[:, 0]).all() and (pts[:, 0] <= boxes[:, 2]).all()
    assert (boxes[:, 1] <= pts[:, 1]).all() and (pts[:, 1] <= boxes[:, 3]).all()
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
    assert ((boxes[:, 2:] - boxes[:, :2]) >= 1.0).all()
    # at least one pixel of margin wherever the image border does not forbid it
    lo_ok = (pts - 1.0).clamp(min=0) >= boxes[:, :2] - 1e-5
    hi_ok = torch.minimum(pts + 1.0, torch.tensor([w, h]).float()) <= boxes[:, 2:] + 1e-5
    assert lo_ok.all() and hi_ok.all()
    # the coarse mask is inside its (scale >= 1) box
    tight, nonempty = mask_boxes(masks)
    assert (boxes[nonempty, :2] <= tight[nonempty, :2] + 1e-5).all()
    assert (boxes[nonempty, 2:] >= tight[nonempty, 2:] - 1e-5).all()
    # reproducible with the same generator seed
    again = crop_boxes(masks, pts, (h, w), (1.0, 2.0), generator=torch.Generator().manual_seed(33))
    assert torch.equal(again, boxes)
    assert not torch.equal(crop_boxes(masks, pts, (h, w), 2.0), boxes)  # scales really are random


def test_crop_boxes_scale_and_empty_mask():
    m = torch.zeros(2, 100, 100, dtype=torch.bool)
    m[0, 40:60, 30:50] = True  # box (30, 40, 50, 60), center (40, 50)
    pts = torch.tensor([[45.0, 45.0], [50.0, 50.0]])
    boxes = crop_boxes(m, pts, (100, 100), 2.0, empty_box_size=32.0)
    torch.testing.assert_close(boxes[0], torch.tensor([20.0, 30.0, 60.0, 70.0]))
    torch.testing.assert_close(boxes[1], torch.tensor([18.0, 18.0, 82.0, 82.0]))  # 32 px x 2
    same = crop_boxes(m, pts, (100, 100), torch.tensor([2.0, 2.0]), empty_box_size=32.0)
    torch.testing.assert_close(same, boxes)


# ------------------------------------------------------------------------------------------ heatmaps
def test_heatmap_peak_and_channel_for_every_class():
    num_classes, s = 5, 32
    boxes = torch.tensor([[10.0, 20.0, 42.0, 52.0]]).repeat(num_classes, 1)  # 32 px -> 1 px per crop px
    pts = torch.tensor([[10.0 + 7.5, 20.0 + 20.5]]).repeat(num_classes, 1)  # crop pixel (row 20, col 7)
    classes = torch.arange(num_classes)  # includes class 0
    heat = expand_heatmap(point_heatmap(pts, boxes, s, 6.0), classes, num_classes)
    assert heat.shape == (num_classes, heatmap_channels("classwise", num_classes), s, s)
    for c in range(num_classes):
        ch = heat[c, c + 1]
        assert ch.max() == pytest.approx(1.0)
        assert divmod(int(ch.argmax()), s) == (20, 7)
        torch.testing.assert_close(heat[c, 0], ch)  # channel 0 is the class-agnostic channel
        others = [k for k in range(1, num_classes + 1) if k != c + 1]
        assert heat[c, others].abs().max() == 0
    agn = point_heatmap(pts, boxes, s, 6.0)
    assert agn.shape == (num_classes, 1, s, s)
    torch.testing.assert_close(agn[:, 0], heat[:, 0])
    with pytest.raises(ValueError):
        expand_heatmap(point_heatmap(pts, boxes, s, 6.0), classes + 1, num_classes)


def test_training_and_refinement_use_the_same_inputs(one_thread):
    """MaskRefineNet.refine feeds the network exactly what make_mrn_inputs (the training path) makes."""
    cfg = _cfg(NUM_CLASSES=3)
    model = build_model(cfg).eval()
    g = torch.Generator().manual_seed(4)
    hw = (70, 90)
    image = torch.rand(3, *hw, generator=g) * 255
    coarse = _ellipses(3, hw, g)
    coarse[2] = False  # an empty coarse mask: its crop is a box around the point
    pts = _centroids(coarse[:2]).tolist() + [[5.0, 60.0]]
    pts = torch.tensor(pts)
    classes = torch.tensor([0, 2, 1])

    seen = {}
    orig = model.predict

    def spy(images, heatmaps, coarse_masks):
        seen.update(image=images, heatmap=heatmaps, coarse_mask=coarse_masks)
        return orig(images, heatmaps, coarse_masks)

    model.predict = spy
    masks, boxes = model.refine(image, coarse, pts, classes)

    crop_b = crop_boxes(coarse, pts, hw, cfg.MODEL.MRN.BOX_SCALE)
    train = make_mrn_inputs(image, coarse, pts, crop_b, out_size=cfg.MODEL.MRN.CROP_SIZE,
                            heatmap_mode="classwise", sigma=cfg.MODEL.MRN.HEATMAP_SIGMA,
                            classes=classes, num_classes=3)
    for k in ("image", "heatmap", "coarse_mask"):
        torch.testing.assert_close(seen[k], train[k])
    assert masks.shape == (3, *hw) and masks.dtype == torch.bool and boxes.shape == (3, 4)


def test_merge_refined_keeps_coarse_when_refined_is_empty():
    coarse = torch.zeros(2, 8, 8, dtype=torch.bool)
    coarse[:, 2:4, 2:5] = True
    refined = torch.zeros(2, 8, 8, dtype=torch.bool)
    refined[0, 1:6, 1:3] = True
    masks, boxes = merge_refined(coarse, refined)
    assert torch.equal(masks[0], refined[0]) and torch.equal(masks[1], coarse[1])
    assert boxes.tolist() == [[1.0, 1.0, 3.0, 6.0], [2.0, 2.0, 5.0, 4.0]]


def test_empty_inputs():
    e = torch.zeros(0, 10, 10, dtype=torch.bool)
    boxes = crop_boxes(e, torch.zeros(0, 2), (10, 10))
    assert boxes.shape == (0, 4)
    assert BitMasks(e).crop_and_resize(boxes, 16).shape == (0, 16, 16)
    assert paste_masks(torch.zeros(0, 16, 16), boxes, (10, 10)).shape == (0, 10, 10)


# ------------------------------------------------------------------------------------------- model
@pytest.mark.parametrize("depth", [18, 50])
def test_model_train_and_eval_shapes(depth, one_thread):
    cfg = _cfg(DEPTH=depth, WIDTH=8, NUM_CLASSES=2, ASPP_CHANNELS=16, DECODER_CHANNELS=[16, 16, 8, 8])
    model = build_model(cfg)
    assert isinstance(model, MaskRefineNet)
    s, k = 64, heatmap_channels("classwise", 2)
    inputs = [{"image": torch.randint(0, 256, (3, s, s), dtype=torch.uint8),
               "heatmap": torch.rand(k, s, s), "coarse_mask": torch.rand(s, s) > 0.5,
               "gt_mask": torch.rand(s, s) > 0.5} for _ in range(2)]
    losses = model(inputs)
    assert set(losses) == {"loss_mrn_dice", "loss_mrn_bce"}
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())
    assert model.encoder.stem.conv1_extra.weight.grad.abs().sum() > 0
    assert model.encoder.stem.conv1.weight.shape[1] == 3
    model.eval()
    out = model(inputs)
    assert len(out) == 2 and out[0]["mask_prob"].shape == (s, s)
    probs = model.predict(torch.stack([d["image"] for d in inputs]),
                          torch.stack([d["heatmap"] for d in inputs]),
                          torch.stack([d["coarse_mask"] for d in inputs])[:, None])
    assert probs.shape == (2, s, s) and 0 <= probs.min() and probs.max() <= 1
    torch.testing.assert_close(probs[0], out[0]["mask_prob"])


def test_configs_build_and_reject_frozen_bn(one_thread):
    cfg = _cfg(BASE_CFG)
    assert cfg.MODEL.META_ARCHITECTURE == "MaskRefineNet" and cfg.MODEL.MRN.DEPTH == 101
    model = build_model(_cfg(HEATMAP_MODE="agnostic"))
    assert model.num_heatmap_channels == 1
    with pytest.raises(ValueError):
        build_model(_cfg(NORM="FrozenBN"))
    with pytest.raises(ValueError, match="needs pretrained MODEL.WEIGHTS"):
        build_model(_cfg(ENCODER_NORM="FrozenBN"))  # no weights: a FrozenBN encoder would never train


@pytest.mark.parametrize("depth", [18, 50])
def test_frozen_bn_encoder_reproduces_detectron2_resnet(tmp_path, one_thread, depth):
    """Caffe2-style weights (batch norm folded into a fixed scale and shift): with ENCODER_NORM FrozenBN
    the encoder's res2..res5 on the image channels equal detectron2's own FrozenBN ResNet features."""
    torch.manual_seed(depth)
    bcfg = get_cfg()
    bcfg.MODEL.RESNETS.DEPTH = depth
    bcfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64 if depth < 50 else 256
    bcfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    bcfg.MODEL.RESNETS.NORM = "FrozenBN"
    bcfg.MODEL.RESNETS.STRIDE_IN_1X1 = True
    bcfg.MODEL.BACKBONE.FREEZE_AT = 0
    resnet = build_resnet_backbone(bcfg, ShapeSpec(channels=3)).eval()
    with torch.no_grad():  # non-trivial frozen statistics, so that a wrong norm cannot pass
        for name, buf in list(resnet.named_buffers()) + list(resnet.named_parameters()):
            if name.endswith("norm.weight"):
                buf.uniform_(0.5, 1.5)
            elif name.endswith("norm.bias") or name.endswith("running_mean"):
                buf.uniform_(-0.3, 0.3)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 2.0)
    path = str(tmp_path / "r.pth")
    torch.save({"model": resnet.state_dict(), "matching_heuristics": True}, path)
    cfg = _cfg(DEPTH=depth, WIDTH=64, ENCODER_NORM="FrozenBN", STRIDE_IN_1X1=True)
    cfg.MODEL.WEIGHTS = path
    model = build_model(cfg).eval()
    DetectionCheckpointer(model).load(path)
    x = torch.randn(1, 3, 64, 64)
    extra = model.encoder.stem.conv1_extra.in_channels
    with torch.no_grad():
        want = resnet(x)
        got = model.encoder(torch.cat([x, torch.zeros(1, extra, 64, 64)], dim=1))
    for name in ("res2", "res3", "res4", "res5"):
        torch.testing.assert_close(got[name], want[name], atol=1e-4, rtol=1e-4)
    # the decoder keeps GroupNorm
    assert any(isinstance(m, torch.nn.GroupNorm) for m in model.decoder.modules())


def test_imagenet_style_checkpoint_loads_into_encoder(tmp_path, one_thread):
    """A detectron2-format ResNet checkpoint (names stem.conv1, res2.0...) loads by suffix matching."""
    bcfg = get_cfg()
    bcfg.MODEL.RESNETS.DEPTH = 18
    bcfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    bcfg.MODEL.RESNETS.OUT_FEATURES = ["res5"]
    bcfg.MODEL.RESNETS.NORM = "BN"
    resnet = build_resnet_backbone(bcfg, ShapeSpec(channels=3))
    path = str(tmp_path / "r18.pth")
    torch.save({"model": resnet.state_dict(), "matching_heuristics": True}, path)

    model = build_model(_cfg(DEPTH=18, WIDTH=64, NORM="BN", ENCODER_NORM="BN"))
    DetectionCheckpointer(model).load(path)
    ref = resnet.state_dict()
    mine = model.encoder.state_dict()
    for k in ["stem.conv1.weight", "res2.0.conv1.weight", "res4.1.conv2.weight",
              "res5.0.shortcut.weight", "res3.0.conv1.norm.weight"]:
        torch.testing.assert_close(mine[k], ref[k])


# ---------------------------------------------------------------------------------- learning test
def _scenes(n, hw, g):
    """Noisy images with one target ellipse (plus a distractor) -> (images (N,3,H,W), masks (N,H,W))."""
    target = _ellipses(n, hw, g)
    distractor = _ellipses(n, hw, g)
    bg = 60 + 120 * torch.rand(n, 3, 1, 1, generator=g)
    sign = torch.where(torch.rand(n, 3, 1, 1, generator=g) < 0.5, -1.0, 1.0)
    fg = (bg + sign * (50 + 30 * torch.rand(n, 3, 1, 1, generator=g))).clamp(0, 255)
    other = (bg - sign * (40 + 30 * torch.rand(n, 3, 1, 1, generator=g))).clamp(0, 255)
    img = torch.where(distractor[:, None], other, bg)
    img = torch.where(target[:, None], fg, img)
    img = (img + 20 * torch.randn(n, 3, *hw, generator=g)).clamp(0, 255)
    return img, target


def _corrupt(masks, g):
    """Dilate, erode (7x7) or shift (up to 6 px) each mask."""
    m = masks[:, None].float()
    dil = F.max_pool2d(m, 7, 1, 3)
    ero = -F.max_pool2d(-m, 7, 1, 3)
    shifts = torch.randint(-6, 7, (masks.shape[0], 2), generator=g).tolist()
    sh = torch.stack([torch.roll(m[i], shifts=tuple(s), dims=(1, 2)) for i, s in enumerate(shifts)])
    kind = torch.randint(0, 3, (masks.shape[0],), generator=g)[:, None, None, None]
    return torch.where(kind == 0, dil, torch.where(kind == 1, ero, sh))[:, 0] > 0.5


def test_mrn_learns_to_repair_corrupted_masks(one_thread):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    cfg = _cfg()  # the shipped CPU config: R-18 width 16, 64 x 64 crops, class-wise heatmap, 3 classes
    model = build_model(cfg)
    m = cfg.MODEL.MRN
    hw, n_train, n_test = (80, 80), 256, 64
    images, gt = _scenes(n_train + n_test, hw, g)
    coarse = _corrupt(gt, g)
    points = _centroids(gt)  # centre of mass of an ellipse lies inside it
    classes = torch.randint(0, m.NUM_CLASSES, (n_train + n_test,), generator=g)

    t0 = time.time()
    tr = slice(0, n_train)
    boxes = crop_boxes(coarse[tr], points[tr], hw, tuple(m.TRAIN_BOX_SCALE_RANGE), generator=g)
    data = make_mrn_inputs(images[tr], coarse[tr], points[tr], boxes, out_size=m.CROP_SIZE,
                           heatmap_mode=m.HEATMAP_MODE, sigma=m.HEATMAP_SIGMA, classes=classes[tr],
                           num_classes=m.NUM_CLASSES)
    data["gt_mask"] = BitMasks(gt[tr]).crop_and_resize(boxes, m.CROP_SIZE)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(250):
        idx = torch.randint(0, n_train, (8,), generator=g).tolist()
        losses = model([{k: v[i] for k, v in data.items()} for i in idx])
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()

    model.eval()
    refined = torch.cat([model.refine(images[i], coarse[i : i + 1], points[i : i + 1],
                                      classes[i : i + 1])[0]
                         for i in range(n_train, n_train + n_test)])
    test = slice(n_train, n_train + n_test)
    before = _iou(coarse[test], gt[test]).mean().item()
    after = _iou(refined, gt[test]).mean().item()
    print(f"MRN learning test: mean IoU {before:.3f} -> {after:.3f} in {time.time() - t0:.1f} s")
    assert after > before + 0.15 and after > 0.8
