"""Input scale and tiles that fit a dataset's instance sizes to a SOLOv2 config (pure: numbers in, a
:class:`ScaleChoice` out; no model, no file).

Notation: s = model-input pixels per image pixel; D = the config's design input side (INPUT.MIN_SIZE_TEST),
D32 = D rounded to a multiple of SIZE_DIVISIBILITY; S0 = the finest grid (NUM_GRIDS[0]); [lo_l, hi_l] =
FPN_SCALE_RANGES[l] in input pixels; m = an instance's size sqrt(box w * box h) in image pixels.

Why: SOLOv2 lays its S x S grids over the input and sends each instance to the levels whose range holds its
size in input pixels. A 700 x 1100 microscopy frame with 150 nuclei of 25 px, resized to D = 192, gives 7-px
nuclei at 0.4 per finest cell: under the ranges the config expects, and crowded. Tiles at the image's own
resolution, scaled by s, put both back where the config expects them.

The rule (:func:`choose_scale`):

1. s0 = D / (median shorter image side): what the config does by itself (the clicked images' side when it
   differs by more than 1.25 x from the fully-labelled images', e.g. full labels on a crop).
2. Size: s_size = max(A / median m, 8 / p10 of m) (few instances: the lower end of the median's 95% interval
   instead of the median), A = lo_1 (the lower bound of the second-finest level's
   range, where the two finest levels overlap: 24 px in configs/CPU/SOLOv2_shapes.yaml): the median
   instance at >= A px and 90% of the instances at >= 8 px (2 pixels of the stride-4 mask features).
3. Density: s_density = (D32 / S0) * sqrt(rho / 0.1), rho = instances per image pixel: the least s at
   which D32-px tiles expect <= 0.1 instances per cell of the finest grid.
4. s = max(s0, min(max(s_size, s_density), B / median m, 4)), B = hi_1: never below the config's own scale
   (large objects are what the coarse levels are for), the median never pushed above the second-finest
   level's range, at most 4x upscaling (it invents no detail and costs s^2 pixels). Allowed range: [s0, 4]
   (s0 itself when s0 > 4).
5. Tiles when the scaled shorter side s * side exceeds 1.25 D, or exceeds D32 while whole images would
   hold more than 0.1 instances per finest cell (objects per image / S0^2): TILE.SIZE T = floor(D32 / s)
   image pixels, TILE.SCALE = D32 / T (D32-px inputs), TILE.OVERLAP = min(ceil(1.5 * p95 of m), T // 2)
   pixels (an instance up to 1.5 p95 lies whole in some tile), lowered to max(ceil(p95), T // 3) when the
   tiles would decode more than ``MAX_REDUNDANCY`` x the image's pixels (overlap > T / 3); TILE.TRAIN_SCALE_RANGE
   = the config's own relative multi-scale range (min and max of MIN_SIZE_TRAIN over MIN_SIZE_TEST; (1, 1) for
   a single size), so tiled training jitters the scale around s as whole-image training does around D. The
   layout of the median image (tiles per image, overlap, decoded pixels / image pixels) is one line of the
   reasons; more than ``WARN_TILES`` tiles per image or a decoded share above ``MAX_REDUNDANCY`` warns.
   Else whole images, TILE.SIZE 0:
   MIN_SIZE_TEST = round(s * side) (D when s = s0) and the config's MIN_SIZE_TRAIN, MAX_SIZE_TRAIN,
   MAX_SIZE_TEST scaled by MIN_SIZE_TEST / D (unchanged when s = s0).

Few instances (:func:`few_instance_notes`, 1 to 9 instances): the rule runs on the sizes there are (one
is enough), with a warning that gives the 95% interval of the median size (:func:`median_size_interval`)
and where it would put the median at the chosen scale. With ``clicks`` (:func:`click_stats` of the
point-label json: every object of a clicked image has its click) the density rho pools the fully-labelled
and the clicked images, and the clicks' nearest-neighbour spacing is checked against the sizes (objects
wider than their centres are apart are unlikely: a hint that the few full objects are not typical).
With no instance or no image nothing is chosen: mode "config", no OPTS, a warning.
"""
import math
from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple

import numpy as np

__all__ = ["ClickStats", "ModelFacts", "ScaleChoice", "choose_scale", "click_stats", "coco_size_stats",
           "detection_cap_opts", "few_instance_notes", "format_choice", "median_size_interval", "tile_layout",
           "MAX_SCALE", "MAX_PER_CELL", "MIN_INSTANCES", "TILE_ABOVE", "MIN_BULK_PX", "TOO_SMALL_PX",
           "MAX_REDUNDANCY", "WARN_TILES"]

# Largest scale the rule picks (upscaling further invents no detail and costs s^2 pixels).
MAX_SCALE = 4.0
# Expected instances per cell of the finest grid that the density step allows.
MAX_PER_CELL = 0.1
# Fewer instances than this in the fully-labelled json: chosen all the same, with a warning and the size
# estimate's uncertainty (few_instance_notes); the clicks then count for the density.
MIN_INSTANCES = 10
# Tiles when the scaled image's shorter side exceeds this many design sides.
TILE_ABOVE = 1.25
# The 10th percentile of the instance sizes at the chosen scale should reach this (input pixels).
MIN_BULK_PX = 8.0
# Instances under this many input pixels (one pixel of the stride-4 mask features) are counted as too small.
TOO_SMALL_PX = 4.0
# Tile overlap = this x the 95th percentile of the sizes (at most half the tile).
OVERLAP_FACTOR = 1.5
# Detections kept per image >= this x the densest image's objects (val / test images may be denser).
CAP_FACTOR = 2.0
# Candidates entering Matrix NMS >= this x the detections kept (several grid cells fire per object).
NMS_PRE_FACTOR = 3
# Tile overlap lowered (to max(p95, T / 3)) when the tiles of an image would decode more than this x its pixels.
MAX_REDUNDANCY = 2.25
# Warn when the median image needs more tiles than this (one forward pass each).
WARN_TILES = 2000
# Warn when more than these fractions of the instances are too small / outside every level's range.
WARN_TOO_SMALL, WARN_OUTSIDE = 0.05, 0.1


@dataclass(frozen=True)
class ModelFacts:
    """What the rule needs of a SOLOv2 model config (sizes in input pixels)."""
    num_grids: Tuple[int, ...]                      # MODEL.SOLOV2.NUM_GRIDS, finest first
    scale_ranges: Tuple[Tuple[float, float], ...]   # MODEL.SOLOV2.FPN_SCALE_RANGES
    design_side: int                                # INPUT.MIN_SIZE_TEST (D)
    max_size_test: int                              # INPUT.MAX_SIZE_TEST
    min_size_train: Tuple[int, ...]                 # INPUT.MIN_SIZE_TRAIN
    max_size_train: int                             # INPUT.MAX_SIZE_TRAIN
    size_divisibility: int = 32                     # inputs are padded to a multiple of this (FPN)

    @classmethod
    def from_cfg(cls, cfg) -> "ModelFacts":
        s, i = cfg.MODEL.SOLOV2, cfg.INPUT
        return cls(tuple(int(g) for g in s.NUM_GRIDS), tuple((float(lo), float(hi)) for lo, hi in s.FPN_SCALE_RANGES),
                   int(i.MIN_SIZE_TEST), int(i.MAX_SIZE_TEST), tuple(int(v) for v in i.MIN_SIZE_TRAIN),
                   int(i.MAX_SIZE_TRAIN))

    @property
    def median_band(self) -> Tuple[float, float]:
        """(A, B): the range the median instance is brought into (module docstring, steps 2 and 4)."""
        if len(self.scale_ranges) > 1:
            return self.scale_ranges[1]
        return self.scale_ranges[0][1] / 2, self.scale_ranges[0][1]

    @property
    def train_scale_range(self) -> Tuple[float, float]:
        """The config's multi-scale training range relative to its test size: (min, max) of MIN_SIZE_TRAIN / D."""
        sizes = self.min_size_train or (self.design_side,)
        return round(min(sizes) / self.design_side, 4), round(max(sizes) / self.design_side, 4)

    @property
    def tile_input_side(self) -> int:
        """D32: the design side rounded to a multiple of ``size_divisibility``."""
        k = self.size_divisibility
        return max(k, int(round(self.design_side / k)) * k)


@dataclass(frozen=True)
class ScaleChoice:
    """The choice and its reasons. Sizes are sqrt(box w * box h); "image px" = the image's own pixels."""
    mode: str                  # "tiles", "whole" (whole images) or "config" (too little data: nothing chosen)
    scale: float               # s: input px per image px (tiles: INPUT.TILE.SCALE)
    base_scale: float          # s0: the config's own scale for the median image
    tile_size: int             # INPUT.TILE.SIZE in image px (0: whole images)
    tile_overlap: int          # INPUT.TILE.OVERLAP in image px (0: whole images)
    input_side: int            # shorter side of the model input: D32 with tiles, MIN_SIZE_TEST without
    num_images: int
    num_instances: int
    image_side: float          # median shorter image side, image px
    median_size: float         # median instance size, image px
    p10_size: float
    p95_size: float
    median_input_size: float   # median instance size at the chosen scale, input px
    objects_per_image: float
    objects_per_cell: float    # expected instances per cell of the finest grid (per tile with tiles)
    frac_outside_ranges: float  # instances outside every FPN_SCALE_RANGES range at the chosen scale
    frac_too_small: float      # instances under TOO_SMALL_PX input px at the chosen scale
    reasons: Tuple[str, ...] = ()
    warnings: Tuple[str, ...] = ()
    # Model-config overrides that apply the choice, KEY VALUE ... (empty in mode "config").
    opts: Tuple = field(default=())
    # Few instances (< MIN_INSTANCES): 95% interval of the median size, image px (() when not computed).
    size_interval: Tuple[float, ...] = ()
    num_clicks: int = 0        # clicks pooled into the density (few instances only)
    click_spacing: float = 0.0  # median distance from a click to the nearest click of its image, image px (0: none)


def coco_size_stats(coco: dict) -> Tuple[List[Tuple[int, int]], List[float], List[int]]:
    """(image (height, width) list, instance sizes sqrt(box w * box h) in image px, instances per image in
    image order) of a COCO instances dict. Crowd annotations are left out; a box is taken from ``bbox``,
    else from the polygons' extent (an RLE without ``bbox`` is left out)."""
    images = coco.get("images") or []
    counts: Dict[int, int] = {img["id"]: 0 for img in images}
    sizes = []
    for ann in coco.get("annotations") or []:
        if ann.get("iscrowd", 0):
            continue
        box = ann.get("bbox")
        if box is None and isinstance(ann.get("segmentation"), list) and ann["segmentation"]:
            xy = np.concatenate([np.asarray(p, float).reshape(-1, 2) for p in ann["segmentation"]])
            box = [0, 0, *(xy.max(0) - xy.min(0))]
        if box is None:
            continue
        sizes.append(math.sqrt(max(box[2], 0) * max(box[3], 0)))
        if ann.get("image_id") in counts:
            counts[ann["image_id"]] += 1
    return [(int(img["height"]), int(img["width"])) for img in images], sizes, [counts[img["id"]] for img in images]


def tile_layout(height: float, width: float, tile: int, overlap: int) -> Tuple[int, float]:
    """(tiles, decoded pixels / image pixels) of ``modeling.tiling.tile_boxes``'s layout of one image: per
    axis one tile when the side is <= ``tile``, else ceil((side - tile) / (tile - overlap)) + 1 tiles."""
    def per_axis(side):
        return 1 if side <= tile else int(math.ceil((side - tile) / (tile - overlap))) + 1
    ny, nx = per_axis(height), per_axis(width)
    return ny * nx, ny * nx * min(tile, height) * min(tile, width) / float(height * width)


@dataclass(frozen=True)
class ClickStats:
    """What the clicks of a point-label json say about the objects (every object of a clicked image is
    assumed clicked). Distances in image px."""
    num_clicks: int
    per_image: Tuple[int, ...]   # clicks of each clicked image (images without clicks: 0)
    area: float                  # summed pixels of the clicked images
    spacing: float               # median nearest-neighbour distance over clicks with a neighbour (0: none)
    sides: Tuple[int, ...] = ()  # shorter side of each clicked image


# Rows of the pairwise-distance block of click_stats (memory: rows x clicks of one image).
_NN_BLOCK = 2048


def click_stats(points: dict) -> ClickStats:
    """:class:`ClickStats` of a point-label json (annotations with ``point_coords`` [[x, y], ...]: the first
    point counts). Nearest neighbours within each image, by blocks of pairwise distances (torch.cdist)."""
    import torch

    images = points.get("images") or []
    index = {img["id"]: k for k, img in enumerate(images)}
    anns = [a for a in points.get("annotations") or [] if a.get("point_coords") and a.get("image_id") in index]
    per_image = np.bincount([index[a["image_id"]] for a in anns], minlength=len(images)).astype(int)
    area = float(sum(int(img["height"]) * int(img["width"]) for img in images))
    sides = tuple(min(int(img["height"]), int(img["width"])) for img in images)
    if not anns:
        return ClickStats(0, tuple(per_image.tolist()), area, 0.0, sides)
    img_of = np.array([index[a["image_id"]] for a in anns])
    xy = torch.tensor([a["point_coords"][0][:2] for a in anns], dtype=torch.float64)
    nearest = []
    for k in np.flatnonzero(per_image >= 2):
        pts = xy[torch.from_numpy(np.flatnonzero(img_of == k))]
        for start in range(0, len(pts), _NN_BLOCK):
            d = torch.cdist(pts[start:start + _NN_BLOCK], pts)
            d[torch.arange(d.shape[0]), torch.arange(start, start + d.shape[0])] = float("inf")
            nearest.append(d.min(1).values)
    spacing = float(torch.cat(nearest).median()) if nearest else 0.0
    return ClickStats(len(anns), tuple(per_image.tolist()), area, spacing, sides)


def _clicked_side(side: float, clicks) -> Tuple[float, List[str]]:
    """(median shorter side the scale is chosen for, warnings): the clicked images' when theirs differs from the
    fully-labelled images' (``side``) by more than TILE_ABOVE x (e.g. full labels on a crop): the exports run
    on the clicked images."""
    if clicks is None or not clicks.sides:
        return side, []
    other = float(np.median(clicks.sides))
    if max(other, side) <= TILE_ABOVE * min(other, side):
        return side, []
    return other, [f"the fully-labelled images (median shorter side {side:.0f} px) are not the size of the clicked "
                   f"ones ({other:.0f} px): the scale is chosen for the clicked images"]


def median_size_interval(sizes: Sequence[float], z: float = 1.96) -> Tuple[float, ...]:
    """Approximate ``z`` (1.96: 95%) interval of the median instance size, image px: log-normal sizes, the
    median's standard error 1.2533 x sd(log size) / sqrt(n) around log(median). () with fewer than 2 sizes
    (one size says nothing of the spread)."""
    x = np.log(np.asarray(sizes, float))
    if len(x) < 2:
        return ()
    half = z * 1.2533 * float(np.std(x, ddof=1)) / math.sqrt(len(x))
    mid = float(np.median(x))
    return round(math.exp(mid - half), 3), round(math.exp(mid + half), 3)


def few_instance_notes(sizes: Sequence[float], scale: float, facts: ModelFacts, clicks=None,
                       num_images: int = 0) -> Tuple[List[str], List[str]]:
    """(reasons, warnings) of a choice made on fewer than MIN_INSTANCES instances: how uncertain the size
    estimate is, what that means at the chosen ``scale``, what the clicks added (:class:`ClickStats`)."""
    x = np.asarray(sizes, float)
    m, n = float(np.median(x)), len(x)
    A, B = facts.median_band
    interval = median_size_interval(x)
    if interval:
        spread = (f"95% interval of the median [{interval[0]:.1f}, {interval[1]:.1f}] px, i.e. the median lands "
                  f"in [{interval[0] * scale:.1f}, {interval[1] * scale:.1f}] input px at scale {scale:.3g} "
                  f"(wanted [{A:g}, {B:g}])")
    else:
        spread = "its spread is unknown (a factor of 2 either way would not surprise)"
    warnings = [f"only {n} instance{'s' if n != 1 else ''} in the fully-labelled json (< {MIN_INSTANCES}): the input "
                f"scale rests on {'them' if n != 1 else 'it'}: median size {m:.1f} px, {spread}. Label "
                f"{MIN_INSTANCES - n} or more further full objects for a steadier choice"]
    reasons = []
    if clicks is not None and clicks.num_clicks:
        reasons.append(f"few instances: the density pools the {n} instances of the {num_images} fully-labelled "
                       f"image(s) with the {clicks.num_clicks} clicks of {len(clicks.per_image)} clicked image(s)")
        if clicks.spacing:
            reasons.append(f"clicks: median nearest-neighbour distance {clicks.spacing:.1f} px (objects wider than "
                           "that would overlap)")
            if clicks.spacing < m:
                warnings.append(f"the clicks' median nearest-neighbour distance ({clicks.spacing:.1f} px) is below "
                                f"the full objects' median size ({m:.1f} px): the clicked objects are likely smaller "
                                "or more crowded than the few fully-labelled ones; label full objects on a typical "
                                "image")
    return reasons, warnings


def _config_choice(facts, image_side, sizes, counts, s0, warning) -> ScaleChoice:
    """Mode "config": nothing chosen, the statistics still reported."""
    x = np.asarray(sizes, float)
    pct = (lambda q: round(float(np.percentile(x, q)), 3)) if len(x) else (lambda q: 0.0)
    per_image = float(np.mean(counts)) if len(counts) else 0.0
    return ScaleChoice(
        mode="config", scale=round(s0, 6), base_scale=round(s0, 6), tile_size=0, tile_overlap=0,
        input_side=facts.design_side, num_images=len(counts), num_instances=len(x), image_side=image_side,
        median_size=pct(50), p10_size=pct(10), p95_size=pct(95), median_input_size=round(pct(50) * s0, 3),
        objects_per_image=round(per_image, 3), objects_per_cell=round(per_image / facts.num_grids[0] ** 2, 5),
        frac_outside_ranges=round(_outside(x, s0, facts), 4),
        frac_too_small=round(float(np.mean(x * s0 < TOO_SMALL_PX)), 4) if len(x) else 0.0,
        reasons=("nothing chosen: the model config's own input sizes are kept",), warnings=(warning,))


def _outside(sizes, s, facts) -> float:
    if not len(sizes):
        return 0.0
    x = np.asarray(sizes, float) * s
    inside = np.zeros(len(x), bool)
    for lo, hi in facts.scale_ranges:
        inside |= (x >= lo) & (x <= hi)
    return float(1.0 - inside.mean())


def choose_scale(image_hw: Sequence[Tuple[int, int]], instance_sizes: Sequence[float],
                 objects_per_image: Sequence[int], facts: ModelFacts, clicks: ClickStats = None) -> ScaleChoice:
    """The input scale and tiles of the module docstring's rule.

    Args:
        image_hw: (height, width) of each fully-labelled image, image px.
        instance_sizes: sqrt(box w * box h) of each instance, image px.
        objects_per_image: instances of each image (same order as ``image_hw``).
        facts: the model config's grids, scale ranges and input sizes.
        clicks: :func:`click_stats` of the point-label json: the density with fewer than MIN_INSTANCES
            instances; the image side when the clicked images are of another size than the full ones.

    Returns:
        ScaleChoice, whose ``opts`` are the INPUT.TILE.* (tiles) or INPUT.MIN/MAX_SIZE_* (whole images) keys.
    """
    sizes = np.asarray(instance_sizes, float)
    sizes = sizes[sizes > 0]
    n_img = len(image_hw)
    D, D32, S0 = facts.design_side, facts.tile_input_side, facts.num_grids[0]
    if not n_img:
        return _config_choice(facts, 0.0, sizes, [], 1.0, "no images in the fully-labelled json: nothing to "
                              "choose the input scale from")
    hw = np.asarray(image_hw, float)
    shorter = hw.min(1)
    side, side_warnings = _clicked_side(float(np.median(shorter)), clicks)
    s0 = D / side
    if not len(sizes):
        return _config_choice(facts, side, sizes, objects_per_image, s0,
                              "no instance in the fully-labelled json: nothing to choose the input scale from; the "
                              "model config's own input sizes are kept")
    m, p10, p95 = (float(np.percentile(sizes, q)) for q in (50, 10, 95))
    A, B = facts.median_band
    few = len(sizes) < MIN_INSTANCES
    per_image, area = np.asarray(objects_per_image, float), float(np.sum(hw[:, 0] * hw[:, 1]))
    if few and clicks is not None and clicks.num_clicks:  # few instances: the clicked images count for density
        per_image, area = np.concatenate([per_image, np.asarray(clicks.per_image, float)]), area + clicks.area
    rho = float(per_image.sum()) / area
    # few instances: the lower end of the median's 95% interval is brought to A (the median itself with one size)
    m_low = (median_size_interval(sizes) or (m,))[0] if few else m
    s_size = max(A / m_low, MIN_BULK_PX / p10)
    s_density = D32 / S0 * math.sqrt(rho / MAX_PER_CELL)
    wanted = max(s_size, s_density)
    s_up = min(wanted, B / m, MAX_SCALE)
    s = max(s0, s_up)
    reasons = [f"the config's own scale {s0:.3g} ({D} px / median shorter side {side:.0f} px) puts the median "
               f"instance ({m:.1f} px) at {m * s0:.1f} px; wanted: median in [{A:g}, {B:g}] px (the second-finest "
               f"level's range), 10th percentile >= {MIN_BULK_PX:g} px, <= {MAX_PER_CELL:g} instances per cell of "
               f"the {S0} x {S0} grid"]
    if s_size > s0:
        reasons.append(f"size: scale >= {s_size:.3g} (median >= {A:g} px, 10th percentile {p10:.1f} px >= "
                       f"{MIN_BULK_PX:g} px" + (f"; few instances: the median's 95% interval from {m_low:.1f} px"
                                                 if m_low != m else "") + ")")
    if s_density > s0:
        reasons.append(f"density: {rho * 1e6:.0f} instances per megapixel need scale >= {s_density:.3g} "
                       f"({D32}-px tiles of {D32 / s_density:.0f} image px)")
    if s == s0:
        reasons.append("the config's own scale already fits: kept")
    elif s_up < wanted:
        reasons.append(f"capped at {s_up:.3g} (" + ("the largest scale allowed" if s_up == MAX_SCALE else
                                                  f"median at most {B:g} px") + ")")
    warnings = list(side_warnings)
    if n_img > 1 and shorter.max() > 2 * shorter.min():
        warnings.append(f"image shorter sides range from {shorter.min():.0f} to {shorter.max():.0f} px: one scale is "
                        f"chosen for the median ({side:.0f} px)")
    crowded_whole = float(per_image.mean()) / S0 ** 2 > MAX_PER_CELL
    if s * side > TILE_ABOVE * D or (crowded_whole and s * side > D32):
        tile = max(1, int(D32 / s))  # rounded down: the final scale D32 / tile is >= s
        s = D32 / tile
        want = int(math.ceil(OVERLAP_FACTOR * p95))
        overlap = min(want, tile // 2)
        med_h, med_w = (float(v) for v in np.median(hw, axis=0))
        num_tiles, decoded = tile_layout(med_h, med_w, tile, overlap)
        if decoded > MAX_REDUNDANCY and overlap > tile // 3:
            lower = min(max(int(math.ceil(p95)), tile // 3), overlap)
            reasons.append(f"overlap lowered from {overlap} to {lower} px: {overlap} px would decode "
                           f"{decoded:.2f} x the image's pixels (> {MAX_REDUNDANCY:g}); instances up to {lower} px "
                           "still lie whole in some tile")
            overlap = lower
            num_tiles, decoded = tile_layout(med_h, med_w, tile, overlap)
        per_cell = rho * tile * tile / S0 ** 2
        input_side = D32
        why = (f"exceeds {TILE_ABOVE:g} x {D} px" if s * side > TILE_ABOVE * D else
               f"exceeds {D32} px and whole images would put {per_image.mean() / S0 ** 2:.2f} instances "
               "in each finest cell")
        reasons.append(f"tiles: the scaled image ({s * side:.0f} px shorter side) {why}; "
                       f"tiles of {tile} px scaled by {s:.4g} -> {D32}-px inputs, overlap {overlap} px "
                       f"(~{OVERLAP_FACTOR:g} x the 95th percentile, {p95:.1f} px)")
        if p95 > overlap:
            warnings.append(f"large instances (95th percentile {p95:.0f} px) are larger than the {overlap}-px tile "
                            f"overlap: some will be seen whole by no tile")
        jitter = facts.train_scale_range
        reasons.append(f"layout: {num_tiles} tiles per {med_w:.0f} x {med_h:.0f} image (the median), overlap {overlap} "
                       f"px, decoded pixels / image pixels {decoded:.2f}; training scales x{jitter[0]:g}-{jitter[1]:g} "
                       f"around {s:.4g} (the config's MIN_SIZE_TRAIN / MIN_SIZE_TEST)")
        if num_tiles > WARN_TILES:
            warnings.append(f"{num_tiles} tiles per image (one forward pass each): inference will be slow; objects of "
                            f"{m:.0f} px may be labelled at a lower resolution")
        if decoded > MAX_REDUNDANCY:
            warnings.append(f"the tiles decode {decoded:.2f} x each image's pixels (overlap {overlap} px of {tile}-px "
                            "tiles): inference costs that much more than one pass")
        opts = ("INPUT.TILE.SIZE", tile, "INPUT.TILE.OVERLAP", float(overlap), "INPUT.TILE.SCALE", round(s, 6),
                "INPUT.TILE.TRAIN_SCALE_RANGE", tuple(jitter))
        mode = "tiles"
    else:
        tile = overlap = 0
        min_test = D if s == s0 else int(round(s * side))
        k = min_test / D
        per_cell = float(per_image.mean()) / S0 ** 2
        input_side = min_test
        reasons.append(f"whole images: the scaled image ({s * side:.0f} px shorter side) is within {TILE_ABOVE:g} x "
                       f"{D} px; MIN_SIZE_TEST {min_test}")
        opts = ("INPUT.TILE.SIZE", 0, "INPUT.MIN_SIZE_TRAIN", tuple(int(round(v * k)) for v in facts.min_size_train),
                "INPUT.MAX_SIZE_TRAIN", int(round(facts.max_size_train * k)), "INPUT.MIN_SIZE_TEST", min_test,
                "INPUT.MAX_SIZE_TEST", int(round(facts.max_size_test * k)))
        mode = "whole"
    if few:
        few_reasons, few_warnings = few_instance_notes(sizes, s, facts, clicks, n_img)
        reasons += few_reasons
        warnings = few_warnings + warnings
    x = sizes * s
    too_small = float(np.mean(x < TOO_SMALL_PX))
    outside = _outside(sizes, s, facts)
    if m * s < A * (1 - 1e-6):
        warnings.append(f"instances too small: the median ({m:.1f} px) reaches only {m * s:.1f} px at scale {s:.3g} "
                        f"(at most {MAX_SCALE:g}); the config expects >= {A:g} px. Expect missed instances: label "
                        "at a higher resolution or use a config with finer scale ranges")
    if too_small > WARN_TOO_SMALL:
        warnings.append(f"{100 * too_small:.0f}% of the instances are under {TOO_SMALL_PX:g} px at scale {s:.3g} "
                        "(less than a pixel of the stride-4 mask features): they will be missed")
    if outside > WARN_OUTSIDE:
        warnings.append(f"{100 * outside:.0f}% of the instances are outside every level's scale range at scale "
                        f"{s:.3g}: no level learns them")
    if per_cell > MAX_PER_CELL * (1 + 1e-6):
        warnings.append(f"crowded: {per_cell:.2f} instances expected per cell of the {S0} x {S0} grid (> "
                        f"{MAX_PER_CELL:g}): instances will share cells")
    return ScaleChoice(
        mode=mode, scale=round(s, 6), base_scale=round(s0, 6), tile_size=tile, tile_overlap=overlap,
        input_side=input_side, num_images=n_img, num_instances=len(sizes), image_side=side, median_size=round(m, 3),
        p10_size=round(p10, 3), p95_size=round(p95, 3), median_input_size=round(m * s, 3),
        objects_per_image=round(float(per_image.mean()), 3), objects_per_cell=round(per_cell, 5),
        frac_outside_ranges=round(outside, 4), frac_too_small=round(too_small, 4), reasons=tuple(reasons),
        warnings=tuple(warnings), opts=opts, size_interval=median_size_interval(sizes) if few else (),
        num_clicks=clicks.num_clicks if few and clicks is not None else 0,
        click_spacing=round(clicks.spacing, 3) if few and clicks is not None else 0.0)


def format_choice(c: ScaleChoice) -> List[str]:
    """Lines that say what was chosen (the reasons and warnings are separate fields)."""
    data = (f"{c.num_images} images (median shorter side {c.image_side:.0f} px), {c.num_instances} instances "
            f"({c.objects_per_image:.1f} per image), size sqrt(w h): median {c.median_size:.1f} px, 10th percentile "
            f"{c.p10_size:.1f}, 95th {c.p95_size:.1f}")
    if c.size_interval:
        data += f" (95% interval of the median {c.size_interval[0]:.1f}-{c.size_interval[1]:.1f})"
    if c.num_clicks:
        data += f"; density with {c.num_clicks} clicks (median spacing {c.click_spacing:.1f} px)"
    if c.mode == "tiles":
        what = (f"tiles of {c.tile_size} px (overlap {c.tile_overlap} px) scaled by {c.scale:.4g} -> {c.input_side}-px "
                "inputs")
    elif c.mode == "whole":
        what = f"whole images scaled by {c.scale:.4g} (MIN_SIZE_TEST {c.input_side})"
    else:
        what = "nothing chosen (the model config's own input sizes)"
    return [f"data: {data}",
            f"choice: {what}; median instance {c.median_input_size:.1f} px, {c.objects_per_cell:.3f} instances per "
            f"finest cell, {100 * c.frac_outside_ranges:.1f}% outside every level's range, "
            f"{100 * c.frac_too_small:.1f}% under {TOO_SMALL_PX:g} px"]


def detection_cap_opts(densest: int, max_per_img: int, nms_pre: int) -> list:
    """SOLOv2 inference keys so that an image with ``densest`` objects can keep them all.

    Detections kept per image (``MODEL.SOLOV2.MAX_PER_IMG``; also what COCO evaluation scores, see
    ``evaluation/coco.py``) become at least ``CAP_FACTOR`` x ``densest`` rounded up to a hundred, and the
    candidates entering Matrix NMS (``NMS_PRE``) at least ``NMS_PRE_FACTOR`` x that. Only ever raised.

    Returns:
        KEY VALUE list (``[]`` when the config's ``max_per_img`` already is enough).
    """
    cap = int(math.ceil(CAP_FACTOR * densest / 100.0)) * 100
    if cap <= max_per_img:
        return []
    return ["MODEL.SOLOV2.MAX_PER_IMG", cap, "MODEL.SOLOV2.NMS_PRE", max(int(nms_pre), NMS_PRE_FACTOR * cap)]
