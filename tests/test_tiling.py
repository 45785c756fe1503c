"""Tiles (wssis_d2.modeling.tiling, tiled_inference; wssis_d2.data.tiles): layout, best tile of a click,
masks cut to their boxes, tiled = untiled decoding inside a tile, every click kept on a crowded
1024 px image, training crops, and the bad settings."""
import os

import numpy as np
import pytest
import torch

from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.structures import Instances

from wssis_d2 import add_wssis_config
from wssis_d2.data.dataset_mapper import WSSISDatasetMapper
from wssis_d2.data.synthetic import render_shapes_image
from wssis_d2.modeling.cropped_masks import CroppedMasks
from wssis_d2.modeling.tiling import (best_tiles, border_margins, check_tile_settings, greedy_keep,
                                      inner_border_distances, overlap_pixels, tile_boxes)
from wssis_d2.utils.errors import WSSISInputError

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "CPU", "SOLOv2_tiny.yaml")

pytestmark = pytest.mark.usefixtures("one_thread_module")


def _cfg(**tile):
    cfg = get_cfg()
    add_wssis_config(cfg)
    cfg.merge_from_file(CONFIG)
    cfg.MODEL.DEVICE = "cpu"
    for k, v in tile.items():
        setattr(cfg.INPUT.TILE, k, v)
    return cfg


# ----------------------------------------------------------------------------- pure functions
def test_tile_layout_covers_image_with_equal_tiles_and_overlap():
    boxes = tile_boxes(700, 1100, 256, 64)
    assert boxes.shape[1] == 4
    sizes = set(map(tuple, (boxes[:, 2:] - boxes[:, :2]).tolist()))
    assert sizes == {(256, 256)}
    assert boxes[:, 0].min() == 0 and boxes[:, 1].min() == 0
    assert boxes[:, 2].max() == 1100 and boxes[:, 3].max() == 700
    xs = sorted(set(boxes[:, 0].tolist()))
    ys = sorted(set(boxes[:, 1].tolist()))
    # neighbours overlap by at least the requested 64 px: ceil((1100 - 256) / 192) + 1 = 6 columns, 4 rows
    assert len(xs) == 6 and len(ys) == 4
    assert all(b - a <= 256 - 64 for a, b in zip(xs, xs[1:]))
    assert all(b - a <= 256 - 64 for a, b in zip(ys, ys[1:]))
    covered = torch.zeros(700, 1100, dtype=torch.bool)
    for x0, y0, x1, y1 in boxes.tolist():
        covered[y0:y1, x0:x1] = True
    assert bool(covered.all())
    # a small image is one tile of its own size
    assert tile_boxes(100, 80, 256, 64).tolist() == [[0, 0, 80, 100]]


def test_overlap_pixels_and_bad_settings():
    assert overlap_pixels(256, 0.25) == 64 and overlap_pixels(256, 40) == 40
    check_tile_settings(0, -5, 1.0)  # tiles off: nothing checked
    with pytest.raises(WSSISInputError, match="OVERLAP must be >= 0"):
        check_tile_settings(256, -1, 1.0)
    with pytest.raises(WSSISInputError, match="smaller than INPUT.TILE.SIZE"):
        check_tile_settings(256, 256, 1.0)
    with pytest.raises(WSSISInputError, match="largest stride"):
        check_tile_settings(32, 0.25, 1.0, min_input_side=64)
    with pytest.raises(WSSISInputError, match="SCALE must be > 0"):
        check_tile_settings(256, 0.25, 0.0)
    # the model refuses a tile smaller than its largest stride (R-18 FPN with P6: 64)
    with pytest.raises(WSSISInputError, match="largest stride \\(64 px\\)"):
        build_model(_cfg(SIZE=48))
    with pytest.raises(WSSISInputError, match="OVERLAP must be >= 0"):
        build_model(_cfg(SIZE=128, OVERLAP=-3))


def test_best_tile_is_farthest_from_inner_borders():
    boxes = tile_boxes(200, 200, 128, 56)  # starts 0 and 72 per axis: 4 tiles, overlap [72, 128)
    assert boxes.tolist() == [[0, 0, 128, 128], [72, 0, 200, 128], [0, 72, 128, 200], [72, 72, 200, 200]]
    points = torch.tensor([
        [20.0, 20.0],    # only tile 0 holds it
        [110.0, 30.0],   # in tiles 0 and 1: 18 px from tile 0's right border, 38 from tile 1's left
        [90.0, 30.0],    # 38 px from tile 0's right border, 18 from tile 1's left: tile 0
        [100.0, 100.0],  # centre of the 4-way overlap: equal everywhere -> lowest index
        [200.0, 200.0],  # on the image's bottom-right border (x = W): the last tile
        [195.0, 10.0],   # near the image border (not a tile border): tile 1, 118 px from its bottom border
    ])
    assert best_tiles(points, boxes, (200, 200)).tolist() == [0, 1, 0, 0, 3, 1]
    d = inner_border_distances(points, boxes, (200, 200))
    assert d[0, 1] == float("-inf") and d[1, 1] == pytest.approx(38.0) and d[5, 1] == pytest.approx(118.0)


def test_greedy_keep_and_margins():
    # 0 suppresses 1, 1 would suppress 2 but is removed, so 2 stays; 0 and 3 are unrelated
    sup = torch.zeros(4, 4, dtype=torch.bool)
    sup[1, 0] = sup[2, 1] = True
    assert greedy_keep(sup).tolist() == [True, False, True, True]
    tiles = torch.tensor([[0, 0, 128, 128], [72, 0, 200, 128]])
    boxes = torch.tensor([[10.0, 10.0, 128.0, 40.0], [100.0, 10.0, 150.0, 40.0]])
    m = border_margins(boxes, tiles, (128, 200))
    assert m.tolist() == [0.0, 28.0]  # the first touches tile 0's right border (inner); the second is inside


def _box(mask):
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def test_cropped_masks_paste_index_count_and_rle():
    """Masks cut to their boxes give back the same dense masks, areas, rectangle counts and COCO RLEs."""
    import pycocotools.mask as mask_util

    g = torch.Generator().manual_seed(0)
    local = torch.rand(5, 30, 40, generator=g) > 0.6
    local[2] = False  # an empty mask
    local[3] = False
    local[3, 5:9, 7:20] = True
    cm = CroppedMasks.from_dense(local, (100, 90), origin=(20, 50))  # tile pixel (0, 0) = image (20, 50)
    dense = torch.zeros(5, 100, 90, dtype=torch.bool)
    dense[:, 50:80, 20:60] = local
    assert torch.equal(cm.to_dense(), dense)
    assert cm.boxes[3].tolist() == [27, 55, 40, 59] and cm.boxes[2].tolist() == [20, 50, 20, 50]
    assert cm.areas().tolist() == dense.flatten(1).sum(1).tolist()
    assert torch.equal(cm[torch.tensor([3, 0])].to_dense(), dense[[3, 0]])
    assert torch.equal(cm[1:3].to_dense(), dense[1:3]) and torch.equal(cm[-1].to_dense(), dense[-1:])
    assert torch.equal(CroppedMasks.cat([cm[:2], cm[2:]]).to_dense(), dense)
    rect = torch.tensor([[25, 52, 40, 60], [0, 0, 10, 10]])
    assert cm.count_in(torch.tensor([0, 1]), rect).tolist() == [int(dense[0, 52:60, 25:40].sum()), 0]
    assert cm.and_count(torch.tensor([0]), torch.tensor([1]), torch.tensor([[0, 0, 90, 100]])).tolist() == [
        int((dense[0] & dense[1]).sum())]
    ref = mask_util.encode(np.asfortranarray(dense.permute(1, 2, 0).numpy().astype(np.uint8)))
    assert [r["counts"] for r in cm.to_rles()] == [r["counts"] for r in ref]


# ----------------------------------------------------------------------------- real model
def _model(**tile):
    torch.manual_seed(0)
    m = build_model(_cfg(**tile)).eval()
    with torch.no_grad():
        # Mask features depend on the image; kernels are random but shared by design of the test:
        # the class branch is confident everywhere so that each point gets a mask of its own.
        m.ins_head.cate_pred.bias.fill_(2.0)
        m.mask_head.out.norm.bias.fill_(0.5)
    return m


def _points(xy, classes, hw, ids=None):
    inst = Instances(hw)
    inst.gt_points = torch.tensor(xy, dtype=torch.float32).reshape(-1, 2)
    inst.gt_classes = torch.tensor(classes, dtype=torch.long)
    inst.gt_point_valid = torch.ones(len(classes), dtype=torch.bool)
    inst.gt_point_ids = torch.tensor(ids if ids is not None else list(range(100, 100 + len(classes))))
    return inst


def _image(h, w, seed=0):
    rng = np.random.default_rng(seed)
    img, _ = render_shapes_image(rng, h, w, max_instances=12, min_size=12.0, style="clean")
    return torch.as_tensor(np.ascontiguousarray(img.transpose(2, 0, 1)))


def test_click_inside_a_tile_decodes_as_that_tile_alone():
    """2 x 2 tiling: the tiled result of a click equals the untiled decoding of its tile's image (one tile
    per forward pass, so that the arithmetic is the same; batched tiles agree up to float rounding)."""
    tiled = _model(SIZE=128, OVERLAP=32, BATCH=1)
    whole = _model()
    assert tiled.tiler is not None and whole.tiler is None
    image = _image(224, 224)
    tiles = tile_boxes(224, 224, 128, 32)
    assert len(tiles) == 4
    clicks = [[40.0, 50.0], [180.0, 60.0], [60.0, 190.0], [170.0, 170.0]]  # one well inside each tile
    classes = [0, 3, 1, 2]
    with torch.no_grad():
        out = tiled([{"image": image, "point_instances": _points(clicks, classes, (224, 224))}])[0]
    inst, stats = out["instances"], out["point_stats"]
    assert len(inst) == 4 and stats["num_points_without_mask"] == 0
    assert inst.point_ids.tolist() == [100, 101, 102, 103]  # click order, ids mapped back
    for k, (x0, y0, x1, y1) in enumerate(tiles.tolist()):
        crop = image[:, y0:y1, x0:x1]
        local = [[clicks[k][0] - x0, clicks[k][1] - y0]]
        with torch.no_grad():
            ref = whole([{"image": crop, "point_instances": _points(local, [classes[k]], (128, 128))}])[0]
        ref = ref["instances"]
        assert len(ref) == 1
        pasted = torch.zeros(224, 224, dtype=torch.bool)
        pasted[y0:y1, x0:x1] = ref.pred_masks[0]
        assert torch.equal(inst.pred_masks[k], pasted)
        assert inst.pred_levels[k] == ref.pred_levels[0]
        assert float(inst.scores[k]) == pytest.approx(float(ref.scores[0]))
        assert inst.pred_points[k].tolist() == pytest.approx(clicks[k])
        assert inst.pred_boxes.tensor[k].tolist() == pytest.approx(
            (ref.pred_boxes.tensor[0] + torch.tensor([x0, y0, x0, y0])).tolist())
    batched = _model(SIZE=128, OVERLAP=32, BATCH=4)
    with torch.no_grad():
        out4 = batched([{"image": image, "point_instances": _points(clicks, classes, (224, 224))}])[0]["instances"]
    assert (out4.pred_masks ^ inst.pred_masks).flatten(1).sum(1).max() <= 5
    assert torch.equal(out4.pred_levels, inst.pred_levels)


def test_click_near_a_border_is_decoded_in_the_tile_that_holds_it_best():
    tiled = _model(SIZE=128, OVERLAP=56)
    whole = _model()
    image = _image(128, 200, seed=3)
    click = [110.0, 64.0]  # 18 px from tile 0's right border, 38 px from tile 1's left border
    tiles = tile_boxes(128, 200, 128, 56)
    assert best_tiles(torch.tensor([click]), tiles, (128, 200)).tolist() == [1]
    with torch.no_grad():
        out = tiled([{"image": image, "point_instances": _points([click], [2], (128, 200))}])[0]["instances"]
        x0 = int(tiles[1, 0])
        ref = whole([{"image": image[:, :, x0:x0 + 128],
                      "point_instances": _points([[click[0] - x0, click[1]]], [2], (128, 128))}])[0]["instances"]
    assert len(out) == 1 and len(ref) == 1
    assert torch.equal(out.pred_masks[0, :, x0:x0 + 128], ref.pred_masks[0])
    assert not out.pred_masks[0, :, :x0].any()


def test_crowded_1024_image_every_click_gets_one_annotation(tmp_path):
    """1000 small objects, 1000 clicks, tiles of 256: 1000 pseudo-label annotations in the export."""
    from wssis_d2.evaluation.pseudo_labels import instances_to_pseudo_annotations

    import cv2

    # 1000 discs of 8-16 px diameter, one per 32 px cell of a 32 x 32 grid (24 cells left empty)
    rng = np.random.default_rng(7)
    img = np.full((1024, 1024, 3), 40, np.uint8)
    cells = rng.permutation(1024)[:1000]
    centres = np.stack([cells % 32, cells // 32], 1) * 32 + 16 + rng.integers(-6, 7, (1000, 2))
    for (cx, cy), r in zip(centres, rng.integers(4, 9, 1000)):
        cv2.circle(img, (int(cx), int(cy)), int(r), tuple(int(v) for v in rng.integers(120, 255, 3)), -1)
    clicks = (centres + 0.5).astype(np.float32).tolist()
    classes = rng.integers(0, 6, 1000).tolist()
    m = _model(SIZE=256, OVERLAP=32)
    image = torch.as_tensor(np.ascontiguousarray(img.transpose(2, 0, 1)))
    with torch.no_grad():
        out = m([{"image": image, "point_instances": _points(clicks, classes, (1024, 1024),
                                                              ids=list(range(1, 1001)))}])[0]
    inst = out["instances"]
    assert out["point_stats"]["num_points"] == 1000
    assert out["point_stats"]["num_points_without_mask"] == 0 and len(inst) == 1000
    anns = instances_to_pseudo_annotations(inst, 1, {c: c + 1 for c in range(6)})
    assert len(anns) == 1000
    assert sorted(a["point_ann_id"] for a in anns) == list(range(1, 1001))
    assert all(a["area"] > 0 for a in anns)


def test_plain_tiled_inference_returns_full_image_instances():
    m = _model(SIZE=128, OVERLAP=32)
    image = _image(200, 300)
    with torch.no_grad():
        out = m([{"image": image, "height": 400, "width": 600}])[0]["instances"]
    assert out.image_size == (400, 600)
    assert out.pred_masks.shape[1:] == (400, 600)
    assert len(out) == len(out.scores) == len(out.pred_boxes)


# ----------------------------------------------------------------------------- training crops
def test_training_mapper_cuts_a_tile_and_drops_unrepresentable_instances():
    cfg = _cfg(SIZE=64, SCALE=2.0)
    mapper = WSSISDatasetMapper(cfg, is_train=True)
    from wssis_d2.data.coco_masks import encode_masks
    import cv2
    import tempfile
    img = np.full((100, 160, 3), 30, np.uint8)
    masks = np.zeros((3, 100, 160), bool)
    masks[0, 10:50, 10:150] = True   # large, always cut by a 64 px tile
    masks[1, 0:100, 0:2] = True      # 2 px wide strip on the left edge
    masks[2, 60:61, 100:101] = True  # one pixel: never a target even scaled x2 (2 x 2 < half of 4 x 4)
    for m in masks:
        img[m] = 200
    path = os.path.join(tempfile.mkdtemp(), "im.png")
    cv2.imwrite(path, img)
    anns = [{"bbox": _box(torch.from_numpy(m)), "bbox_mode": 0,  # XYXY_ABS
             "category_id": 0, "segmentation": rle, "iscrowd": 0}
            for m, rle in zip(masks, encode_masks(masks))]
    record = {"file_name": path, "height": 100, "width": 160, "image_id": 1, "annotations": anns}
    np.random.seed(0)
    for _ in range(30):
        out = mapper(record)
        assert tuple(out["image"].shape[1:]) == (128, 128)  # 64 px tile scaled x2
        inst = out["instances"]
        masks_out = inst.gt_masks.tensor
        assert masks_out.shape[1:] == (128, 128)
        # boxes are the tight boxes of the visible (cropped) masks
        assert torch.equal(inst.gt_boxes.tensor, inst.gt_masks.get_bounding_boxes().tensor)
        # nothing left whose visible part is below half a 4 x 4 target block
        assert bool((masks_out.flatten(1).sum(1) >= 8).all())
    assert mapper.tiny_instances.num_dropped > 0  # the one-pixel object was dropped when inside a tile


def test_tiles_need_bitmask_masks():
    cfg = _cfg(SIZE=64)
    cfg.INPUT.MASK_FORMAT = "polygon"
    with pytest.raises(WSSISInputError, match="bitmask"):
        WSSISDatasetMapper(cfg, is_train=True)


def test_training_tile_without_objects_is_an_empty_example(tmp_path):
    import cv2
    from wssis_d2.data.coco_masks import encode_masks
    cfg = _cfg(SIZE=64)
    mapper = WSSISDatasetMapper(cfg, is_train=True)
    mask = np.zeros((1, 300, 300), bool)
    mask[0, 280:290, 280:290] = True  # one object in a corner: most 64 px tiles miss it
    path = str(tmp_path / "im.png")
    cv2.imwrite(path, np.zeros((300, 300, 3), np.uint8))
    record = {"file_name": path, "height": 300, "width": 300, "image_id": 1,
              "annotations": [{"bbox": [280.0, 280.0, 290.0, 290.0], "bbox_mode": 0, "category_id": 0,
                               "segmentation": encode_masks(mask)[0], "iscrowd": 0}]}
    np.random.seed(1)
    sizes = [len(mapper(record)["instances"]) for _ in range(20)]
    assert 0 in sizes  # empty tiles happen and give empty Instances with every field
    out = mapper(record)
    assert out["instances"].gt_masks.tensor.shape[1:] == (64, 64)
    # and the model trains on a batch of empty tiles
    model = build_model(cfg)
    model.train()
    empty = [x for x in (mapper(record) for _ in range(20)) if len(x["instances"]) == 0][:2]
    losses = model(empty)
    assert all(torch.isfinite(v) for v in losses.values())


def test_training_image_without_annotations_is_an_empty_example(tmp_path):
    """DATALOADER.FILTER_EMPTY_ANNOTATIONS False keeps images without objects: empty Instances with masks."""
    import cv2
    cfg = _cfg()
    cfg.INPUT.MASK_FORMAT = "bitmask"
    mapper = WSSISDatasetMapper(cfg, is_train=True)
    path = str(tmp_path / "im.png")
    cv2.imwrite(path, np.zeros((100, 120, 3), np.uint8))
    out = mapper({"file_name": path, "height": 100, "width": 120, "image_id": 1, "annotations": []})
    inst = out["instances"]
    assert len(inst) == 0 and inst.gt_masks.tensor.shape[1:] == tuple(out["image"].shape[1:])
    model = build_model(cfg)
    model.train()
    assert all(torch.isfinite(v) for v in model([out]).values())
