"""The embedded synthetic dataset "wssis_shapes": textured shapes on cluttered backgrounds.

Each image holds a few instances of six shape classes drawn with random textures on a textured, noisy
background with distractor lines. Colours and textures are drawn independently of the class, so the
class can only be told from the shape; similar-looking pairs differ only in shape (circle vs ring,
rectangle vs cross vs L-shape). Two classes are non-convex (ring, L-shape) and the centre of mass of
every ring lies outside its mask (in its hole). Instances occlude one another: what is stored is the
*visible* mask of each instance, and an instance that becomes too small after occlusion
(``MIN_VISIBLE_AREA`` pixels or ``MIN_VISIBLE_FRACTION`` of its drawn area) is removed from the
image entirely, so no unlabeled object pixels remain.

Instance scales ``sqrt(w * h)`` (the quantity SOLOv2 uses to pick a pyramid level) are drawn
log-uniformly from ``min_size`` (default ``MIN_SIZE``) to ``max_size_fraction`` (default
``MAX_SIZE_FRACTION``) of the shorter image side: for 320 px images about 10 px to 270 px, which spreads
instances over every level of scale ranges like (1, 48), (24, 96), (48, 192), (96, 384), (192, 2048).
``min_size`` 8 and ``max_size_fraction`` 0.9 span the range of COCO's objects relative to the image
(~8 px to ~90% of the side) at any image size.

Output: a COCO instances json (compressed RLE ``segmentation``, ``bbox`` [x, y, w, h] in pixels,
``area`` in pixels, ``iscrowd`` 0) and one JPEG per image under ``<output_dir>/images/``. RLE can
represent the ring's hole, polygons cannot: train with ``INPUT.MASK_FORMAT bitmask``. Category ids are
deliberately not contiguous (``SHAPE_CATEGORIES``) so the contiguous-id mapping is exercised.

Everything is seeded per image (``np.random.default_rng([seed, split key, index])``): image ``i`` of a
split does not depend on how many images are generated.
"""
import os
import zlib

import cv2
import numpy as np

from .coco_masks import mask_annotation
from .json_io import write_json_atomic

__all__ = [
    "SHAPE_CATEGORIES",
    "SHAPE_CLASSES",
    "STYLES",
    "generate_shapes_dataset",
    "render_shapes_image",
]

GENERATOR_VERSION = 1

# Category ids are deliberately non-contiguous.
SHAPE_CATEGORIES = (
    {"id": 1, "name": "circle", "supercategory": "round"},
    {"id": 2, "name": "ring", "supercategory": "round"},
    {"id": 4, "name": "rectangle", "supercategory": "angular"},
    {"id": 5, "name": "cross", "supercategory": "angular"},
    {"id": 7, "name": "l_shape", "supercategory": "angular"},
    {"id": 9, "name": "triangle", "supercategory": "angular"},
)
SHAPE_CLASSES = tuple(c["name"] for c in SHAPE_CATEGORIES)

MIN_SIZE = 10.0  # smallest instance scale (side of the shape's square frame), pixels
MAX_SIZE_FRACTION = 0.85  # largest instance scale, fraction of the shorter image side
MIN_SIZE_BY_CLASS = {"ring": 18.0, "cross": 14.0, "l_shape": 14.0}  # thin parts stay >= ~2 px
MIN_INSTANCES, MAX_INSTANCES = 3, 9  # instances drawn per image, before occlusion drops
MIN_VISIBLE_AREA = 36  # an instance with fewer visible pixels is removed
MIN_VISIBLE_FRACTION = 0.25  # ... as is one with less than this fraction of its drawn area visible
MIN_CLEAN_CONTRAST = 90.0  # "clean": least L2 distance (0..255 RGB) of an object colour to the background

_SHIFT = 4  # cv2 fractional bits: vertices are drawn with 1/16 px precision
_SCALE = float(1 << _SHIFT)


# ------------------------------------------------------------------------------ shape geometry
def _unit_polygon(kind, rng):
    """Vertices (M, 2) of a shape in its unit frame [-0.5, 0.5]^2 (x right, y down)."""
    if kind == "rectangle":
        aspect = rng.uniform(0.4, 1.0)
        sx, sy = 0.5 / np.sqrt(aspect), 0.5 * np.sqrt(aspect)  # unit area, aspect ratio `aspect`
        return np.array([[-sx, -sy], [sx, -sy], [sx, sy], [-sx, sy]])
    if kind == "cross":
        a = rng.uniform(0.28, 0.42) / 2  # half arm thickness
        return np.array(
            [[-a, -.5], [a, -.5], [a, -a], [.5, -a], [.5, a], [a, a],
             [a, .5], [-a, .5], [-a, a], [-.5, a], [-.5, -a], [-a, -a]]
        )
    if kind == "l_shape":
        t = rng.uniform(0.28, 0.45)  # arm thickness
        return np.array([[-.5, -.5], [-.5 + t, -.5], [-.5 + t, .5 - t], [.5, .5 - t], [.5, .5], [-.5, .5]])
    if kind == "triangle":
        angles = np.deg2rad(np.array([-90.0, 30.0, 150.0]) + rng.uniform(-12, 12, size=3))
        radii = 0.62 * rng.uniform(0.85, 1.15, size=3)
        return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    raise ValueError(f"Unknown polygon shape {kind!r}")


def _draw_shape(kind, size, center, angle_deg, rng, height, width):
    """Binary mask (H, W) uint8 of one shape of scale ``size`` px centred at ``center`` (x, y) in
    continuous pixel coordinates, rotated by ``angle_deg``."""
    mask = np.zeros((height, width), np.uint8)
    cx, cy = center
    if kind in ("circle", "ring"):
        aspect = rng.uniform(0.8, 1.0)
        axes = np.array([size / 2, size / 2 * aspect])
        # cv2 pixel centres are integers, ours are at +0.5: shift the centre by -0.5.
        c = (int(round((cx - 0.5) * _SCALE)), int(round((cy - 0.5) * _SCALE)))
        ax = tuple(int(round(v * _SCALE)) for v in axes)
        cv2.ellipse(mask, c, ax, angle_deg, 0, 360, 1, -1, cv2.LINE_8, _SHIFT)
        if kind == "ring":
            inner = tuple(int(round(v * _SCALE * rng.uniform(0.45, 0.7))) for v in axes)
            cv2.ellipse(mask, c, inner, angle_deg, 0, 360, 0, -1, cv2.LINE_8, _SHIFT)
        return mask
    pts = _unit_polygon(kind, rng) * size
    if rng.random() < 0.5:  # mirror image (L-shape and triangle are chiral)
        pts[:, 0] = -pts[:, 0]
    theta = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    pts = pts @ rot.T + np.array([cx - 0.5, cy - 0.5])
    cv2.fillPoly(mask, [np.round(pts * _SCALE).astype(np.int32)], 1, cv2.LINE_8, _SHIFT)
    return mask


def _sample_layout(rng, height, width, max_instances=MAX_INSTANCES, min_size=MIN_SIZE,
                   max_size_fraction=MAX_SIZE_FRACTION, min_instances=MIN_INSTANCES):
    """Random shapes, back to front: list of (class index, size, (cx, cy), angle)."""
    n = int(rng.integers(min(min_instances, max_instances), max_instances + 1))
    max_size = max_size_fraction * min(height, width)
    shapes = []
    for _ in range(n):
        cls = int(rng.integers(len(SHAPE_CLASSES)))
        lo = max(min_size, MIN_SIZE_BY_CLASS.get(SHAPE_CLASSES[cls], min_size))
        size = float(np.exp(rng.uniform(np.log(lo), np.log(max_size))))
        mx, my = min(0.3 * size, width / 2), min(0.3 * size, height / 2)
        center = (rng.uniform(mx, width - mx), rng.uniform(my, height - my))
        shapes.append((cls, size, center, float(rng.uniform(0, 360))))
    # Mostly large in the back and small in front, with some larger-over-smaller occlusions.
    shapes.sort(key=lambda s: -s[1])
    for i in range(n - 1):
        if rng.random() < 0.25:
            shapes[i], shapes[i + 1] = shapes[i + 1], shapes[i]
    return shapes


def _visible_masks(drawn, height, width):
    """Visible masks after occlusion of ``drawn`` (list of (H, W) uint8, back to front), dropping
    instances that become too small. Returns (kept indices, their visible (H, W) bool masks)."""
    keep = list(range(len(drawn)))
    while True:
        label = np.zeros((height, width), np.int16)  # 0: background, k + 1: instance k on top
        for k in keep:
            label[drawn[k].astype(bool)] = k + 1
        visible = [label == k + 1 for k in keep]
        ok = [
            v.sum() >= max(MIN_VISIBLE_AREA, MIN_VISIBLE_FRACTION * drawn[k].sum())
            for k, v in zip(keep, visible)
        ]
        if all(ok):  # removing an instance only uncovers others, so this terminates
            return keep, visible
        keep = [k for k, good in zip(keep, ok) if good]


# ------------------------------------------------------------------------------ appearance
def _pattern(rng, ys, xs):
    """A texture pattern in [0, 1] on the grid given by pixel index vectors ``ys``, ``xs``."""
    kind = rng.integers(4)
    yy, xx = ys[:, None].astype(np.float32), xs[None, :].astype(np.float32)
    if kind == 0:  # flat
        return np.zeros((len(ys), len(xs)), np.float32)
    if kind == 1:  # stripes of random orientation and period
        theta, period = rng.uniform(0, np.pi), rng.uniform(4, 16)
        phase = xx * np.cos(theta) + yy * np.sin(theta)
        return 0.5 + 0.5 * np.sin(2 * np.pi * phase / period + rng.uniform(0, 2 * np.pi))
    if kind == 2:  # checkerboard
        cell = int(rng.integers(3, 11))
        return (((yy // cell) + (xx // cell)) % 2).astype(np.float32)
    blobs = rng.random((int(rng.integers(2, 7)), int(rng.integers(2, 7)))).astype(np.float32)
    return cv2.resize(blobs, (len(xs), len(ys)), interpolation=cv2.INTER_CUBIC)


def _random_colors(rng):
    """Two colours (3,) float32 of a random contrast."""
    c1 = rng.uniform(0, 255, size=3)
    c2 = np.clip(c1 + rng.normal(0, rng.uniform(15, 80), size=3), 0, 255)
    return c1.astype(np.float32), c2.astype(np.float32)


def _background(rng, height, width):
    """Textured background (H, W, 3) float32 with distractor lines."""
    gh, gw = (int(v) for v in rng.integers(2, 7, size=2))
    low = rng.uniform(0, 255, size=(gh, gw, 3)).astype(np.float32)
    img = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC)
    if rng.random() < 0.6:
        amp = rng.uniform(15, 50)
        img += (amp * (_pattern(rng, np.arange(height), np.arange(width)) - 0.5))[..., None]
    img = np.clip(img, 0, 255)
    for _ in range(int(rng.integers(2, 13))):  # clutter: thin lines that belong to no class
        p = rng.uniform(0, 1, size=4) * [width, height, width, height]
        cv2.line(img, (int(p[0]), int(p[1])), (int(p[2]), int(p[3])),
                 rng.uniform(0, 255, size=3).tolist(), int(rng.integers(1, 4)), cv2.LINE_AA)
    return img


def _paint(img, mask, rng):
    """Paint a textured, shaded object into ``img`` (H, W, 3) float32 where ``mask`` (H, W) is set."""
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    p = _pattern(rng, np.arange(y0, y1), np.arange(x0, x1))
    c1, c2 = _random_colors(rng)
    tex = c1 * (1 - p[..., None]) + c2 * p[..., None]
    # Linear shading across the object.
    gy, gx = rng.normal(0, 0.25, size=2) / max(y1 - y0, x1 - x0)
    yy, xx = np.mgrid[0:y1 - y0, 0:x1 - x0].astype(np.float32)
    tex *= (1.0 + gy * (yy - (y1 - y0) / 2) + gx * (xx - (x1 - x0) / 2))[..., None]
    crop = mask[y0:y1, x0:x1]
    img[y0:y1, x0:x1][crop] = tex[crop]


def _background_clean(rng, height, width):
    """Smooth background (H, W, 3) float32 of low contrast, no distractors."""
    gh, gw = (int(v) for v in rng.integers(2, 5, size=2))
    base = rng.uniform(30, 225, size=3)
    low = base + rng.normal(0, 20, size=(gh, gw, 3))
    return np.clip(cv2.resize(low.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC), 0, 255)


def _paint_clean(img, mask, rng):
    """Paint a flat-coloured object with mild shading where ``mask`` (H, W) is set; its colour is at
    least ``MIN_CLEAN_CONTRAST`` away from the mean of what it covers."""
    ys, xs = np.nonzero(mask)
    under = img[ys, xs].mean(axis=0)
    for _ in range(100):
        color = rng.uniform(0, 255, size=3)
        if np.linalg.norm(color - under) >= MIN_CLEAN_CONTRAST:
            break
    else:  # practically unreachable: take the colour farthest from `under` on the RGB cube
        color = np.where(under < 128, 255.0, 0.0)
    y0, x0 = ys.min(), xs.min()
    extent = max(ys.max() - y0, xs.max() - x0) + 1
    gy, gx = rng.normal(0, 0.1, size=2) / extent
    shade = 1.0 + gy * (ys - y0 - extent / 2) + gx * (xs - x0 - extent / 2)
    img[ys, xs] = (color[None, :] * shade[:, None]).astype(np.float32)


def _appearance_cluttered(rng, height, width, visible):
    """Textured objects on a textured background with distractor lines, strong noise: (H, W, 3) float32."""
    img = _background(rng, height, width)
    for mask in visible:
        _paint(img, mask, rng)
    img += rng.normal(0, rng.uniform(3, 12), size=(height, width, 1)).astype(np.float32)
    img += rng.normal(0, 4, size=img.shape).astype(np.float32)
    return img


def _appearance_clean(rng, height, width, visible):
    """Flat-coloured, contrasting objects on a smooth background, light noise: (H, W, 3) float32."""
    img = _background_clean(rng, height, width)
    for mask in visible:
        _paint_clean(img, mask, rng)
    img += rng.normal(0, 3, size=img.shape).astype(np.float32)
    return img


# Image styles: "cluttered" (the default) or "clean" (a from-scratch network learns it within a CPU budget,
# the benchmark profile; the shapes stay as hard). Shapes and masks do not depend on the style.
_APPEARANCES = {"cluttered": _appearance_cluttered, "clean": _appearance_clean}
STYLES = tuple(_APPEARANCES)


def render_shapes_image(rng, height, width, max_instances=MAX_INSTANCES, min_size=MIN_SIZE,
                        style="cluttered", max_size_fraction=MAX_SIZE_FRACTION, min_instances=MIN_INSTANCES):
    """Render one synthetic image.

    Args:
        rng (np.random.Generator): the only source of randomness.
        height, width (int): image size in pixels.
        max_instances (int): at most this many shapes are drawn (before occlusion drops).
        min_size (float): smallest instance scale in pixels (larger: an easier image).
        style (str): one of ``STYLES`` (appearance only; shapes and masks do not depend on it).
        max_size_fraction (float): largest instance scale, as a fraction of the shorter image side.
        min_instances (int): at least this many shapes are drawn (the count is uniform in
            [min_instances, max_instances]; crowded sets raise it).

    Returns:
        image (np.ndarray): (H, W, 3) uint8, BGR (cv2 order; colours are random anyway).
        instances (list[dict]): back to front, each ``{"category_id": int (dataset id),
            "mask": (H, W) bool visible mask}``; masks are disjoint and non-empty.
    """
    if style not in STYLES:
        raise ValueError(f"Unknown shapes style {style!r}; expected one of {STYLES}")
    if not 0 < min_size < max_size_fraction * min(height, width):
        raise ValueError(f"Need 0 < min_size ({min_size}) < max_size_fraction ({max_size_fraction}) x "
                         f"image side ({min(height, width)})")
    shapes = _sample_layout(rng, height, width, max_instances, min_size, max_size_fraction, min_instances)
    drawn = [
        _draw_shape(SHAPE_CLASSES[cls], size, center, angle, rng, height, width)
        for cls, size, center, angle in shapes
    ]
    keep, visible = _visible_masks(drawn, height, width)
    image = np.clip(_APPEARANCES[style](rng, height, width, visible), 0, 255).astype(np.uint8)
    instances = [
        {"category_id": SHAPE_CATEGORIES[shapes[k][0]]["id"], "mask": m} for k, m in zip(keep, visible)
    ]
    return image, instances


# ------------------------------------------------------------------------------ dataset
def _as_hw(image_size):
    if isinstance(image_size, (int, np.integer)):
        return int(image_size), int(image_size)
    h, w = image_size
    return int(h), int(w)


def generate_shapes_dataset(output_dir, num_images, image_size=320, seed=0, split="train",
                            json_name=None, jpeg_quality=92, max_instances=MAX_INSTANCES,
                            min_size=MIN_SIZE, style="cluttered", max_size_fraction=MAX_SIZE_FRACTION,
                            min_instances=MIN_INSTANCES):
    """Generate ``num_images`` images and their COCO instances json.

    Args:
        output_dir (str): the json goes to ``<output_dir>/<json_name>``, the images to
            ``<output_dir>/images/<split>_<index>.jpg`` (``file_name`` is relative to
            ``<output_dir>/images``, the image root).
        num_images (int): number of images (ids 1..num_images).
        image_size (int or (int, int)): square side, or (height, width), in pixels.
        seed (int): with ``split``, determines every pixel and annotation.
        split (str): name of the split; different splits give different images for one seed.
        json_name (str): defaults to ``<split>.json``.
        jpeg_quality (int): JPEG quality of the written images.
        max_instances (int): at most this many shapes per image (fewer: an easier dataset).
        min_size (float): smallest instance scale in pixels (larger: an easier dataset).
        style (str): appearance, one of ``STYLES``.
        max_size_fraction (float): largest instance scale, fraction of the shorter side (scales are
            log-uniform from ``min_size`` to it; 0.9 with ``min_size`` 8 spans COCO's relative range).
        min_instances (int): fewest shapes drawn per image (before occlusion drops).

    Returns:
        str: path of the written json (written atomically, after all images).
    """
    height, width = _as_hw(image_size)
    if num_images < 0 or min(height, width) < 32:
        raise ValueError(f"Need num_images >= 0 and an image side >= 32 px, got {num_images}, "
                         f"{(height, width)}")
    image_dir = os.path.join(output_dir, "images")
    os.makedirs(image_dir, exist_ok=True)
    split_key = zlib.crc32(split.encode("utf-8"))
    images, annotations = [], []
    for index in range(num_images):
        rng = np.random.default_rng([seed, split_key, index])
        image, instances = render_shapes_image(rng, height, width, max_instances, min_size, style,
                                               max_size_fraction, min_instances)
        image_id = index + 1
        file_name = f"{split}_{index:06d}.jpg"
        cv2.imwrite(os.path.join(image_dir, file_name), image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
        for inst in instances:
            annotations.append(
                mask_annotation(inst["mask"], len(annotations) + 1, image_id, inst["category_id"])
            )
    coco = {
        "info": {
            "description": "wssis-d2 synthetic shapes",
            "generator": "wssis_d2.data.synthetic.generate_shapes_dataset",
            "version": GENERATOR_VERSION,
            "seed": seed,
            "split": split,
            "num_images": num_images,
            "image_size": [height, width],
            "max_instances": max_instances,
            "min_instances": min_instances,
            "min_size": min_size,
            "max_size_fraction": max_size_fraction,
            "style": style,
        },
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [dict(c) for c in SHAPE_CATEGORIES],
    }
    return write_json_atomic(coco, os.path.join(output_dir, json_name or f"{split}.json"))
