"""The embedded synthetic dataset: deterministic, valid COCO, sizes from small to large, a ring."""
import filecmp
import json
import os

import numpy as np
import pytest
from pycocotools.coco import COCO

from wssis_d2.data.synthetic import SHAPE_CATEGORIES, generate_shapes_dataset, render_shapes_image


@pytest.fixture(scope="module")
def shapes_json(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    return generate_shapes_dataset(str(root), 40, image_size=(160, 192), seed=3)


def test_valid_coco_json(shapes_json):
    coco = COCO(shapes_json)
    ids = sorted(c["id"] for c in SHAPE_CATEGORIES)
    assert sorted(coco.getCatIds()) == ids and ids != list(range(1, len(ids) + 1))
    assert len(coco.getImgIds()) == 40
    root = os.path.join(os.path.dirname(shapes_json), "images")
    for img in coco.loadImgs(coco.getImgIds()):
        assert (img["height"], img["width"]) == (160, 192)
        assert os.path.isfile(os.path.join(root, img["file_name"]))
    for ann in coco.loadAnns(coco.getAnnIds()):
        mask = coco.annToMask(ann)
        assert mask.shape == (160, 192) and mask.sum() == ann["area"] > 0
        assert ann["iscrowd"] == 0
        ys, xs = np.nonzero(mask)
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]


def test_masks_disjoint_and_sizes_spread(shapes_json):
    coco = COCO(shapes_json)
    scales = []
    for img_id in coco.getImgIds():
        masks = [coco.annToMask(a) for a in coco.loadAnns(coco.getAnnIds(imgIds=img_id))]
        assert masks, "every image has at least one instance"
        assert np.stack(masks).sum(0).max() <= 1, "visible masks of one image never overlap"
        scales += [np.sqrt(a["bbox"][2] * a["bbox"][3]) for a in coco.loadAnns(coco.getAnnIds(imgIds=img_id))]
    scales = np.array(scales)
    assert scales.min() < 16 and scales.max() > 0.6 * 160
    assert len({a["category_id"] for a in coco.loadAnns(coco.getAnnIds())}) == len(SHAPE_CATEGORIES)


def test_some_centroid_outside_mask(shapes_json):
    coco = COCO(shapes_json)
    outside = 0
    for ann in coco.loadAnns(coco.getAnnIds()):
        mask = coco.annToMask(ann)
        ys, xs = np.nonzero(mask)
        outside += mask[int(ys.mean() + 0.5), int(xs.mean() + 0.5)] == 0
    assert outside >= 1


def test_deterministic(tmp_path, shapes_json):
    again = generate_shapes_dataset(str(tmp_path), 5, image_size=(160, 192), seed=3)
    first, second = json.load(open(shapes_json)), json.load(open(again))
    assert second["images"] == first["images"][:5]
    n = len(second["annotations"])
    assert second["annotations"] == first["annotations"][:n]
    src = os.path.join(os.path.dirname(shapes_json), "images")
    assert filecmp.cmp(os.path.join(src, "train_000004.jpg"), tmp_path / "images" / "train_000004.jpg",
                       shallow=False)
    other = generate_shapes_dataset(str(tmp_path), 2, image_size=(160, 192), seed=4, split="val")
    other_anns = json.load(open(other))["annotations"]
    assert other_anns != first["annotations"][: len(other_anns)], "another seed/split, other images"


def test_render_image_shapes():
    rng = np.random.default_rng(0)
    image, instances = render_shapes_image(rng, 96, 96)
    assert image.shape == (96, 96, 3) and image.dtype == np.uint8
    assert all(inst["mask"].shape == (96, 96) and inst["mask"].any() for inst in instances)


def test_clean_style_same_masks_flat_contrasting_objects():
    """The style changes appearance only: same seed, same instances and masks; a clean object is painted
    in one colour (up to mild shading and noise) that stands out from the background around it."""
    cluttered_img, cluttered = render_shapes_image(np.random.default_rng(3), 96, 128, style="cluttered")
    clean_img, clean = render_shapes_image(np.random.default_rng(3), 96, 128, style="clean")
    assert [i["category_id"] for i in clean] == [i["category_id"] for i in cluttered]
    for a, b in zip(clean, cluttered):
        np.testing.assert_array_equal(a["mask"], b["mask"])
    assert not np.array_equal(clean_img, cluttered_img)
    union = np.any([i["mask"] for i in clean], axis=0)
    background = clean_img[~union].astype(np.float32).mean(axis=0)
    for inst in clean:
        pixels = clean_img[inst["mask"]].astype(np.float32)
        assert np.median(pixels.std(axis=0)) < 20  # flat, not textured
        assert np.linalg.norm(pixels.mean(axis=0) - background) > 20
    with pytest.raises(ValueError, match="style"):
        render_shapes_image(np.random.default_rng(3), 64, 64, style="noisy")


def _visible_scales(n, side, **kwargs):
    """sqrt(box w * box h) of the visible masks of ``n`` rendered images (SOLOv2's level quantity)."""
    scales = []
    for i in range(n):
        _, instances = render_shapes_image(np.random.default_rng([5, i]), side, side, 6, style="clean", **kwargs)
        for inst in instances:
            ys, xs = np.nonzero(inst["mask"])
            scales.append(np.sqrt((np.ptp(xs) + 1) * (np.ptp(ys) + 1)))
    return np.array(scales)


def test_scale_range_spans_coco_relative_sizes():
    """min_size 8, max_size_fraction 0.9 at 192 px: ~8 px to most of the side, and every level of
    ranges scaled to the image (COCO's x 192/800: (1, 24) ... (96, 2048)) holds instances."""
    side = 192
    scales = _visible_scales(40, side, min_size=8.0, max_size_fraction=0.9)
    assert scales.min() < 12 and scales.max() > 0.75 * side
    ranges = [(1, 24), (12, 48), (24, 96), (48, 192), (96, 2048)]
    counts = [int(((scales >= lo) & (scales <= hi)).sum()) for lo, hi in ranges]
    assert min(counts) >= 0.05 * len(scales), counts
    # The knob bounds the largest scale (a shape's box is at most ~1.6 x its frame side).
    small = _visible_scales(40, side, min_size=8.0, max_size_fraction=0.3)
    assert small.max() < 1.6 * 0.3 * side < scales.max()
    with pytest.raises(ValueError, match="max_size_fraction"):
        render_shapes_image(np.random.default_rng(0), 64, 64, min_size=40.0, max_size_fraction=0.5)
