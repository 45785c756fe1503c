"""Tile training keeps what the tile shows: with the defaults users get (horizontal flip on), random tile
crops and random scales, every instance visible in a training tile is a target, and no target lies where its
object is not (``data.tiles`` module docstring: the order crop -> flip -> scale, the rule for cut instances).

The check does not trust the mapper's transforms: each object is painted into the image in a colour that
codes its id, so the mapped image itself says which object every pixel shows."""
import os

import cv2
import numpy as np
import pytest
import torch
from detectron2.config import get_cfg

from wssis_d2 import add_wssis_config
from wssis_d2.data.coco_masks import encode_masks
from wssis_d2.data.dataset_mapper import WSSISDatasetMapper
from wssis_d2.data.tiles import build_tile_augmentation, RandomTileCrop, ScaleBy
from wssis_d2.modeling.targets import downsample_masks

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "CPU", "SOLOv2_tiny.yaml")


def _code(ids: np.ndarray) -> np.ndarray:
    """(N,) object ids 1..199 -> (N, 3) uint8 colours, one per id (53, 97, 29 are prime to 200)."""
    ids = np.asarray(ids)
    return np.stack([(ids * 53) % 200 + 40, (ids * 97) % 200 + 40, (ids * 29) % 200 + 40], 1).astype(np.uint8)


def _decode(image: np.ndarray, n: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) int: the id whose colour a pixel has exactly, 0 elsewhere (background and
    the blended pixels at object edges that a resize makes)."""
    codes = _code(np.arange(1, n + 1)).astype(np.int64)
    key = lambda c: (c[..., 0] * 256 + c[..., 1]) * 256 + c[..., 2]  # noqa: E731
    keys = key(codes)
    order = np.argsort(keys)
    pix = key(image.astype(np.int64))
    pos = np.clip(np.searchsorted(keys[order], pix), 0, n - 1)
    return np.where(keys[order][pos] == pix, order[pos] + 1, 0)


def _crowded_record(tmp_path, h=300, w=420, seed=0):
    """An image with ~100 separated discs and rectangles (radius 5-14 px, 3 px gaps), each in its id colour."""
    rng = np.random.default_rng(seed)
    image = np.zeros((h, w, 3), np.uint8)
    taken = np.zeros((h, w), bool)
    masks = []
    for _ in range(2000):
        if len(masks) == 120:
            break
        r = int(rng.integers(5, 15))
        cx, cy = int(rng.integers(-r // 2, w + r // 2)), int(rng.integers(-r // 2, h + r // 2))  # may leave the image
        m = np.zeros((h, w), np.uint8)
        if rng.random() < 0.5:
            cv2.circle(m, (cx, cy), r, 1, -1)
        else:
            cv2.rectangle(m, (cx - r, cy - r // 2), (cx + r, cy + r // 2), 1, -1)
        m = m.astype(bool)
        if m.sum() < 10 or (cv2.dilate(m.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool) & taken).any():
            continue
        taken |= m
        masks.append(m)
    masks = np.stack(masks)
    image[:] = 0
    for i, m in enumerate(masks, start=1):
        image[m] = _code([i])[0]
    path = str(tmp_path / "crowded.png")
    cv2.imwrite(path, image)  # the config reads BGR: the array comes back as written
    anns = []
    for i, (m, rle) in enumerate(zip(masks, encode_masks(masks)), start=1):
        ys, xs = np.nonzero(m)
        anns.append({"id": i, "bbox": [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1),
                                       float(ys.max() - ys.min() + 1)], "bbox_mode": 1,  # XYWH_ABS
                     "category_id": 0, "segmentation": rle, "iscrowd": 0})
    return {"file_name": path, "height": h, "width": w, "image_id": 1, "annotations": anns}, len(masks)


def _cfg(flip):
    cfg = get_cfg()
    add_wssis_config(cfg)
    cfg.merge_from_file(CONFIG)
    cfg.MODEL.DEVICE = "cpu"
    assert cfg.INPUT.FORMAT == "BGR"
    cfg.INPUT.TILE.SIZE = 96
    cfg.INPUT.TILE.SCALE = 1.5
    cfg.INPUT.TILE.TRAIN_SCALE_RANGE = (0.75, 1.25)
    if flip is not None:
        cfg.INPUT.RANDOM_FLIP = flip
    return cfg


def test_default_tile_augmentations_crop_first_then_flip_then_scale():
    cfg = _cfg(None)
    assert cfg.INPUT.RANDOM_FLIP == "horizontal"  # the default users get
    augs = build_tile_augmentation(cfg, True)
    assert isinstance(augs[0], RandomTileCrop) and isinstance(augs[-1], ScaleBy)
    assert any(type(a).__name__ == "RandomFlip" for a in augs[1:-1])
    assert (augs[-1].min_scale, augs[-1].max_scale) == (1.5 * 0.75, 1.5 * 1.25)


@pytest.mark.parametrize("flip", [None, "vertical"])  # None: the default (horizontal, p = 0.5)
def test_every_visible_instance_of_a_training_tile_is_kept_and_none_that_is_not(tmp_path, flip):
    record, n = _crowded_record(tmp_path)
    mapper = WSSISDatasetMapper(_cfg(flip), is_train=True)
    np.random.seed(0)
    sizes = set()
    representable_total = kept_total = 0
    for _ in range(40):
        out = mapper(record)
        image = out["image"].permute(1, 2, 0).numpy()
        sizes.add(image.shape[:2])
        shown = _decode(image, n)  # (H', W') which object each pixel shows
        inst = out["instances"]
        masks = inst.gt_masks.tensor.numpy()
        assert masks.shape[1:] == image.shape[:2]
        # every kept target lies on its object: the coded pixels under its mask are one id, none other
        kept_ids = []
        for m in masks:
            ids, counts = np.unique(shown[m & (shown > 0)], return_counts=True)
            assert len(ids) >= 1, "a target over pixels that show no object"
            assert counts.max() >= 0.95 * counts.sum(), f"a target over several objects: {dict(zip(ids, counts))}"
            kept_ids.append(int(ids[np.argmax(counts)]))
        assert len(set(kept_ids)) == len(kept_ids), "one object kept twice"
        # every object that shows a representable part (the mapper's own rule, on the pixels the image shows;
        # the true visible part is larger, never smaller) is kept
        present = np.unique(shown[shown > 0])
        visible = torch.from_numpy(shown[None] == present[:, None, None])
        representable = present[downsample_masks(visible, 4).flatten(1).any(1).numpy()]
        missing = sorted(set(representable.tolist()) - set(kept_ids))
        assert not missing, f"visible objects {missing} taught as background ({len(representable)} representable)"
        representable_total += len(representable)
        kept_total += len(kept_ids)
    assert len(sizes) > 3  # random scales: several input sizes
    assert representable_total > 200  # the check saw many objects
    assert kept_total >= representable_total
