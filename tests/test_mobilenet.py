"""ImageNet MobileNetV2: the FPN backbone's contract, that its features are torchvision's pretrained ones,
the MaskRefineNet encoder's widened first conv, and the missing-weights error.

The pretrained tests need the weights file that ``make install`` (scripts/install_mobilenet_weights.sh)
puts in torch.hub's cache; they are skipped, saying so, when it is not there.
"""
import os

import numpy as np
import pytest
import torch
from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

from detectron2.config import get_cfg
from detectron2.layers import FrozenBatchNorm2d, ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, build_model

from wssis_d2 import add_wssis_config
from wssis_d2.modeling.backbone import mobilenet as mnv2
from wssis_d2.mrn.mobilenet_encoder import MobileNetV2MRNEncoder

pytestmark = pytest.mark.usefixtures("one_thread_module")

REPO = os.path.join(os.path.dirname(__file__), "..")
HAS_WEIGHTS = os.path.isfile(mnv2.mobilenet_v2_weights_path())
needs_weights = pytest.mark.skipif(not HAS_WEIGHTS, reason="ImageNet MobileNetV2 weights not installed "
                                   "(scripts/install_mobilenet_weights.sh)")
MEAN = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
STD = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)
TV_LAYERS = {"stem": 1, "res2": 3, "res3": 6, "res4": 13, "res5": 17}  # last torchvision layer per stage


def _image(h=96, w=128):
    """A fixed (1, 3, H, W) normalised RGB image: smooth gradients plus a disc (not noise)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([255 * xx / w, 255 * yy / h, 128 + 100 * np.sin(xx / 7.0)], 0)
    img[:, (yy - h / 2) ** 2 + (xx - w / 3) ** 2 < (h / 4) ** 2] = [[230.0], [40.0], [60.0]]
    return (torch.from_numpy(img)[None] - MEAN) / STD


def _torchvision_features(x):
    """torchvision's ImageNet mobilenet_v2 features at the end of each stage (eval mode)."""
    net = mobilenet_v2(weights=MobileNet_V2_Weights.IMAGENET1K_V1).eval()
    out = {}
    with torch.no_grad():
        for i, layer in enumerate(net.features[:18]):
            x = layer(x)
            for name, j in TV_LAYERS.items():
                if i == j:
                    out[name] = x
    return out


def _solov2_cfg(pretrained=True):
    cfg = get_cfg()
    add_wssis_config(cfg)
    cfg.merge_from_file(os.path.join(REPO, "configs", "CPU", "SOLOv2_mnv2_shapes.yaml"))
    cfg.MODEL.MOBILENET.PRETRAINED = pretrained
    return cfg


def test_fpn_backbone_contract_without_weights():
    """Strides 4..64, FPN channels, res2..res5 channels 24/32/96/320; pretrained off needs no file."""
    cfg = _solov2_cfg(pretrained=False)
    backbone = BACKBONE_REGISTRY.get("build_mobilenetv2_fpn_backbone")(cfg, ShapeSpec(channels=3))
    c = cfg.MODEL.FPN.OUT_CHANNELS
    shapes = backbone.output_shape()
    assert list(shapes) == ["p2", "p3", "p4", "p5", "p6"]
    assert [s.stride for s in shapes.values()] == [4, 8, 16, 32, 64]
    assert all(s.channels == c for s in shapes.values())
    bottom = backbone.bottom_up.output_shape()
    assert {k: (v.stride, v.channels) for k, v in bottom.items()} == {
        "res2": (4, 24), "res3": (8, 32), "res4": (16, 96), "res5": (32, 320)}
    assert backbone.size_divisibility == 32
    x = torch.zeros(2, 3, 96, 128)
    out = backbone(x)
    for k, s in shapes.items():
        assert out[k].shape == (2, c, 96 // s.stride if s.stride < 64 else 2, 128 // s.stride)
    # FrozenBN everywhere by default: no trainable BatchNorm2d left in the bottom-up network.
    mods = list(backbone.bottom_up.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in mods)
    assert sum(isinstance(m, FrozenBatchNorm2d) for m in mods) > 0


def test_freeze_at():
    net = mnv2.MobileNetV2Backbone(out_features=["res3"], pretrained=False, norm="BN", freeze_at=2)
    assert net.stage_names == ["stem", "res2", "res3"]  # stages after the last output are not built
    assert not any(p.requires_grad for p in net.stem.parameters())
    assert not any(p.requires_grad for p in net.res2.parameters())
    assert all(p.requires_grad for p in net.res3.parameters())
    with pytest.raises(ValueError, match="out_features"):
        mnv2.MobileNetV2Backbone(out_features=["res6"], pretrained=False)


@needs_weights
def test_backbone_features_equal_torchvision_pretrained():
    """Stem and res2..res5 on a fixed image equal torchvision's ImageNet network's at the same layers."""
    x = _image()
    net = mnv2.MobileNetV2Backbone(out_features=["stem", "res2", "res3", "res4", "res5"]).eval()
    with torch.no_grad():
        ours = net(x)
    ref = _torchvision_features(x)
    for name in TV_LAYERS:
        assert ours[name].abs().mean() > 0.01  # not a degenerate all-zero comparison
        torch.testing.assert_close(ours[name], ref[name], rtol=1e-4, atol=1e-4)
    # ... and differ from a randomly initialised network's (so the weights really were loaded).
    torch.manual_seed(0)
    rand = mnv2.MobileNetV2Backbone(out_features=["res5"], pretrained=False).eval()
    with torch.no_grad():
        assert not torch.allclose(rand(x)["res5"], ref["res5"], atol=1e-2)


@needs_weights
def test_solov2_builds_on_pretrained_backbone_and_trains():
    cfg = _solov2_cfg()
    model = build_model(cfg)
    bottom = model.backbone.bottom_up
    ref = mobilenet_v2(weights=MobileNet_V2_Weights.IMAGENET1K_V1)
    torch.testing.assert_close(bottom.res4[0].conv[0][0].weight, ref.features[7].conv[0][0].weight)
    assert cfg.INPUT.FORMAT == "RGB" and list(cfg.MODEL.PIXEL_STD) == [58.395, 57.12, 57.375]


def test_missing_weights_error_names_install_command(tmp_path):
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path))  # an empty hub cache
    try:
        assert mnv2.mobilenet_v2_weights_path().startswith(str(tmp_path))
        with pytest.raises(FileNotFoundError, match="install_mobilenet_weights.sh"):
            mnv2.load_imagenet_mobilenet_v2(pretrained=True)
    finally:
        torch.hub.set_dir(old)
    assert isinstance(mnv2.load_imagenet_mobilenet_v2(pretrained=False), torch.nn.Module)


@needs_weights
def test_mrn_encoder_rgb_part_is_torchvision_first_conv():
    """The widened first conv: RGB filters are torchvision's, so with zero heatmap / mask channels its
    output equals torchvision's first conv and the whole encoder equals torchvision's features; the
    extra filters start random (the mask changes the output) and receive gradients."""
    enc = MobileNetV2MRNEncoder(in_channels=3 + 2, freeze_at=1).eval()
    x = torch.cat([_image(64, 64), torch.zeros(1, 2, 64, 64)], 1)
    ref_net = mobilenet_v2(weights=MobileNet_V2_Weights.IMAGENET1K_V1).eval()
    with torch.no_grad():
        torch.testing.assert_close(enc.stem.conv1.weight, ref_net.features[0][0].weight)
        torch.testing.assert_close(enc.stem.conv1(x[:, :3]), ref_net.features[0][0](x[:, :3]))
        out = enc(x)
        x[:, 3:, 16:48, 16:48] = 1.0  # a coarse mask / heatmap
        assert not torch.allclose(enc(x)["stem"], out["stem"], atol=1e-3)
    ref = _torchvision_features(x[:, :3])
    assert {k: v.shape[1] for k, v in out.items()} == enc.out_channels
    assert [64 // v.shape[-1] for v in out.values()] == [2, 4, 8, 16, 32]
    for name in TV_LAYERS:
        torch.testing.assert_close(out[name], ref[name], rtol=1e-4, atol=1e-4)
    # freeze_at=1 freezes the pretrained stem, never the extra-channel filters.
    assert not enc.stem.conv1.weight.requires_grad and enc.stem.conv1_extra.weight.requires_grad
    enc.train()
    enc(x)["res5"].sum().backward()
    assert enc.stem.conv1_extra.weight.grad.abs().sum() > 0


def test_mrn_config_on_mobilenet_builds_and_trains():
    cfg = get_cfg()
    add_wssis_config(cfg)
    cfg.merge_from_file(os.path.join(REPO, "configs", "MRN", "MRN_mnv2_cpu.yaml"))
    cfg.MODEL.MOBILENET.PRETRAINED = HAS_WEIGHTS
    model = build_model(cfg)
    assert isinstance(model.encoder, MobileNetV2MRNEncoder)
    s, k = cfg.MODEL.MRN.CROP_SIZE, model.num_heatmap_channels
    inputs = [{"image": torch.randint(0, 256, (3, s, s), dtype=torch.uint8),
               "heatmap": torch.rand(k, s, s), "coarse_mask": torch.rand(s, s) > 0.5,
               "gt_mask": torch.rand(s, s) > 0.5} for _ in range(2)]
    losses = model(inputs)
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())
    assert model.encoder.stem.conv1_extra.weight.grad.abs().sum() > 0
    cfg.MODEL.MRN.ENCODER = "vgg"
    with pytest.raises(ValueError, match="ENCODER"):
        build_model(cfg)
