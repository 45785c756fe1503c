"""Inference of one large image through overlapping tiles (``INPUT.TILE``), for every decoder of
``WSSISSOLOv2``: plain inference, the SSIS threshold baseline and the point-guided pseudo-labels.

The image comes at its own resolution (the mapper applies no resize when tiles are on). It is covered by
``tiling.tile_boxes``; each tile is cropped, normalised, scaled by ``INPUT.TILE.SCALE`` and run through the
backbone and heads in batches of ``INPUT.TILE.BATCH`` tiles (one forward pass per tile); the tile's own
decoder output (at the tile's size in image pixels) is then placed back into the image:

- **points** (``decoder.uses_points``): every valid click is decoded in its best tile
  (``tiling.best_tiles``); only tiles that host a click are run, and each runs once for all its clicks.
  Every click keeps exactly one output row, as without tiles; the order is the click order. A
  ``MODEL.WSSIS.MAX_PER_IMAGE`` cap applies to the whole image, collisions are resolved inside a tile.
- **plain and threshold**: every tile is decoded (its own Matrix NMS and ``MAX_PER_IMG`` per tile), then
  cross-tile copies of one object are removed and at most ``MAX_PER_IMG`` (threshold mode: its own cap)
  stay per image, as without tiles. A copy is removed only when it is the same object seen from another
  tile (``tiling`` module docstring, "Cross-tile duplicates": the seam IoU, restricted to what both tiles
  see, > ``INPUT.TILE.MERGE_THRESHOLD``, same class, whole detections first, then by score), so that a
  small object nested in a large one of its class is never removed for lying on a seam. The survivors
  are sorted by score; COCOEvaluator sees ordinary Instances.

Each tile's masks are cut to their boxes as soon as the tile is decoded (``CroppedMasks``): memory and
the merge's cost follow the objects' box areas, not K x H x W or K x K. The output's ``pred_masks`` are
the usual (K, H, W) bool masks; with ``paste=False`` they stay ``CroppedMasks`` (``to_rles``,
``to_dense``), for images whose K x H x W would not fit (20,000 objects on 4096 px: 335 GB dense).

Outputs are the decoders' own (``point_inference``, ``plain_inference``) at the output size
(``"height"``/``"width"`` of the input).
"""
import logging
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from detectron2.config import configurable
from detectron2.structures import Boxes, Instances
from detectron2.utils.logger import log_every_n_seconds

from ..data.tiles import MASK_STRIDE
from .cropped_masks import CroppedMasks
from .plain_inference import ImageHeads
from .point_inference import empty_point_instances
from .tiling import (best_tiles, border_margins, check_tile_settings, cross_tile_counts, greedy_keep_sparse,
                     merge_order, overlap_pixels, seam_iou, tile_boxes)

__all__ = ["TiledInference", "build_tiled_inference"]

logger = logging.getLogger(__name__)


class TiledInference:
    """Decodes one image tile by tile (module docstring). Called by ``WSSISSOLOv2`` at inference."""

    @configurable
    def __init__(self, *, size: int, overlap: float, scale: float = 1.0, batch: int = 4,
                 merge_threshold: float = 0.5, min_input_side: int = 1, scale_range: Sequence[float] = (1.0, 1.0),
                 paste: bool = True):
        """
        Args:
            size: tile side in image pixels (> 0).
            overlap: pixels (>= 1) or a fraction of ``size``.
            scale: resize factor of each tile before the model.
            batch: tiles per forward pass.
            merge_threshold: cross-tile copies of one object: seam IoU above this (``tiling``).
            min_input_side: the model's largest stride (a scaled tile must be at least that large).
            scale_range: INPUT.TILE.TRAIN_SCALE_RANGE, checked with the other settings (training uses it).
            paste: output ``pred_masks`` as (K, H, W) bool (True) or as ``CroppedMasks`` (False).
        """
        check_tile_settings(size, overlap, scale, min_input_side, scale_range)
        self.size = int(size)
        self.overlap = overlap_pixels(size, overlap)
        self.scale = float(scale)
        self.batch = max(1, int(batch))
        self.merge_threshold = float(merge_threshold)
        # A mask edge is only known to one mask-feature cell (MASK_STRIDE model pixels): a detection counts as
        # whole when its box stays farther than that from its tile's inner borders (image pixels).
        self.border_tolerance = MASK_STRIDE / self.scale
        self.paste = bool(paste)
        self.num_merged = self.num_detections = 0  # cross-tile copies removed / detections seen, this process

    @classmethod
    def from_config(cls, cfg, min_input_side: int = 1):
        t = cfg.INPUT.TILE
        return {"size": t.SIZE, "overlap": t.OVERLAP, "scale": t.SCALE, "batch": t.BATCH,
                "merge_threshold": t.MERGE_THRESHOLD, "min_input_side": min_input_side,
                "scale_range": t.TRAIN_SCALE_RANGE}

    # ------------------------------------------------------------------ tiles through the model
    def _tile_heads(self, model, image: torch.Tensor, tiles: torch.Tensor, ids: Sequence[int]
                    ) -> Iterator[Tuple[int, ImageHeads]]:
        """(tile index, its ``ImageHeads``) for the tiles ``ids``, ``self.batch`` per forward pass.

        ``image``: (3, H, W) uint8 at the image's own resolution. Each head's ``output_hw`` is the tile's
        size in image pixels, so decoders return tile-local masks of that size."""
        th, tw = (int(v) for v in (tiles[0, 3] - tiles[0, 1], tiles[0, 2] - tiles[0, 0]))
        sh, sw = max(1, int(round(th * self.scale))), max(1, int(round(tw * self.scale)))
        for start in range(0, len(ids), self.batch):
            chunk = list(ids[start: start + self.batch])
            crops = torch.stack([image[:, y0:y1, x0:x1] for x0, y0, x1, y1 in tiles[chunk].tolist()])
            if (sh, sw) != (th, tw):  # resizing commutes with the per-channel normalisation done next
                crops = F.interpolate(crops.to(model.device).float(), size=(sh, sw), mode="bilinear",
                                      align_corners=False, antialias=self.scale < 1)
            images = model.preprocess_image([{"image": c} for c in crops])  # normalised, padded: the model's
            heads = model.forward_heads(images)
            for i, t in enumerate(chunk):
                yield t, ImageHeads(
                    cate_logits=[c[i] for c in heads.cate_logits],
                    kernels=[k[i] for k in heads.kernels],
                    mask_feats=heads.mask_feats[i],
                    input_hw=tuple(images.tensor.shape[-2:]),
                    image_hw=(sh, sw),
                    output_hw=(th, tw),
                )

    @staticmethod
    def _to_image(part: Instances, tile: Sequence[int], image_hw: Tuple[int, int]) -> Instances:
        """Tile-local Instances (masks (K_t, th, tw)) -> at the image size: masks cut to their boxes
        (``CroppedMasks``), boxes and points moved by the tile origin ``tile[:2]``."""
        out = Instances(tuple(image_hw))
        x0, y0 = int(tile[0]), int(tile[1])
        for name, value in part.get_fields().items():
            if name == "pred_masks":
                value = CroppedMasks.from_dense(value, image_hw, (x0, y0))
            elif name == "pred_boxes":
                value = Boxes(value.tensor + value.tensor.new_tensor([x0, y0, x0, y0]))
            elif name == "pred_points":
                value = value + value.new_tensor([x0, y0])
            out.set(name, value)
        return out

    def _finish(self, merged: Instances, keep: torch.Tensor) -> Instances:
        """The rows ``keep`` of ``merged``, masks pasted to (K, H, W) unless ``paste`` is off."""
        out = merged[keep]
        if self.paste:
            out.pred_masks = out.pred_masks.to_dense()
        return out

    # ------------------------------------------------------------------ the three decodings
    def decode_points(self, model, image: torch.Tensor, points: Instances) -> Dict[str, object]:
        """Point-guided pseudo-labels of one image (module docstring, "points")."""
        decoder = model.point_decoder
        h, w = image.shape[-2:]
        tiles = tile_boxes(h, w, self.size, self.overlap)
        device = model.device
        valid = points.gt_point_valid.to(device=device, dtype=torch.bool)
        pts = points.gt_points.to(device)
        best = best_tiles(pts, tiles.to(device), (h, w))
        best[~valid] = -1
        ids = points.gt_point_ids.to(device) if points.has("gt_point_ids") else torch.full_like(best, -1)
        used = [int(t) for t in torch.unique(best[best >= 0]).tolist()]
        parts = []
        stats = {"num_collisions": 0, "num_cross_class_collisions": 0, "num_points_capped": 0,
                 "num_points_retried": 0, "num_points_rescued": 0}
        for t, heads in self._tile_heads(model, image, tiles, used):
            sel = torch.nonzero(best == t).squeeze(1)
            (sh, sw), (th, tw) = heads.image_hw, heads.output_hw
            scale = pts.new_tensor([sw / tw, sh / th])  # tile pixels -> model input pixels, per axis
            sub = Instances(heads.image_hw)
            sub.gt_points = (pts[sel] - tiles[t, :2].to(pts)) * scale
            sub.gt_classes = points.gt_classes.to(device)[sel]
            sub.gt_point_valid = torch.ones(len(sel), dtype=torch.bool, device=device)
            sub.gt_point_ids = sel  # the row of each point: mapped back to its annotation id below
            if points.has("gt_sizes"):
                sub.gt_sizes = points.gt_sizes.to(device)[sel] * scale.mean()
            out = decoder(heads, sub, max_per_image=0)
            parts.append(self._to_image(out["instances"], tiles[t].tolist(), (h, w)))
            for key in stats:
                stats[key] += int(out["point_stats"].get(key) or 0)
        # Click order: each output's source row, then at most MAX_PER_IMAGE of them by score.
        src = torch.cat([p.point_ids for p in parts]) if parts else torch.zeros(0, dtype=torch.long)
        keep = torch.sort(src).indices
        cap = int(getattr(decoder, "max_per_image", 0) or 0)
        if 0 < cap < len(keep):
            scores = torch.cat([p.scores for p in parts])[keep]
            top = torch.sort(scores, descending=True, stable=True).indices[:cap]
            stats["num_points_capped"] = len(keep) - cap
            keep = keep[top.sort().values]
        if parts:
            result = self._finish(Instances.cat(parts), keep)
            result.point_ids = ids[result.point_ids]
        else:  # no valid click: no tile is run
            result = empty_point_instances((h, w), device)
        stats = {
            "num_points": len(points),
            "num_invalid_points": int((~valid).sum()),
            "num_points_without_mask": len(points) - len(result),
            **stats,
        }
        return {"instances": result, "point_stats": stats}

    def decode_plain(self, model, image: torch.Tensor, decode, max_per_image: int = 0) -> Instances:
        """Detections of every tile (``decode(heads) -> Instances``), cross-tile duplicates merged, at most
        ``max_per_image`` (> 0) of them by score, as the untiled decoders keep per image."""
        h, w = image.shape[-2:]
        tiles = tile_boxes(h, w, self.size, self.overlap)
        parts = [self._to_image(decode(heads), tiles[t].tolist(), (h, w))  # tile masks cut at once
                 for t, heads in self._tile_heads(model, image, tiles, list(range(len(tiles))))]
        return self._combine_image(parts, tiles, (h, w), max_per_image)

    def combine(self, parts: List[Instances], tiles: torch.Tensor, image_hw: Tuple[int, int],
                max_per_image: int = 0) -> Instances:
        """One Instances at the image size from the detections of every tile (``parts[t]`` of tile t, in
        tile pixels: pred_masks (K_t, th, tw), scores, pred_classes, pred_boxes): cross-tile duplicates
        removed (``merge``), the top ``max_per_image`` (> 0) kept, by decreasing score."""
        parts = [self._to_image(p, tile, image_hw) for p, tile in zip(parts, tiles.tolist())]
        return self._combine_image(parts, tiles, image_hw, max_per_image)

    def _combine_image(self, parts: List[Instances], tiles: torch.Tensor, image_hw: Tuple[int, int],
                       max_per_image: int) -> Instances:
        merged = Instances.cat(parts)
        keep = self._merge_image(merged, self._tile_of(parts), tiles, image_hw)
        if max_per_image > 0:
            keep = keep[:max_per_image]
        return self._finish(merged, keep)

    @staticmethod
    def _tile_of(parts: List[Instances]) -> torch.Tensor:
        device = parts[0].scores.device if parts else torch.device("cpu")
        counts = torch.tensor([len(p) for p in parts], dtype=torch.long, device=device)
        return torch.repeat_interleave(torch.arange(len(parts), device=device), counts)

    def merge(self, parts: List[Instances], tiles: torch.Tensor, image_hw: Tuple[int, int]) -> torch.Tensor:
        """Indices (into the concatenated parts) of the detections that stay, by decreasing score.

        Args:
            parts: per tile, Instances with pred_masks (K_t, th, tw), scores, pred_classes, pred_boxes.
            tiles: (T, 4) the tile of each part.
        """
        image_parts = [self._to_image(p, tile, image_hw) for p, tile in zip(parts, tiles.tolist())]
        return self._merge_image(Instances.cat(image_parts), self._tile_of(parts), tiles, image_hw)

    def _merge_image(self, inst: Instances, tile_of: torch.Tensor, tiles: torch.Tensor,
                     image_hw: Tuple[int, int]) -> torch.Tensor:
        """``merge`` of detections already at the image size (``CroppedMasks``), ``tile_of`` (K,) their tiles."""
        num = len(inst)
        masks, scores, classes = inst.pred_masks, inst.scores, inst.pred_classes
        det_tiles = tiles.to(masks.device)[tile_of]
        margins = border_margins(masks.boxes.to(torch.float32), det_tiles, image_hw)
        whole = margins > self.border_tolerance
        pairs, inter, in_a, in_b = cross_tile_counts(masks, tile_of, tiles.to(masks.device), classes)
        a, b = pairs[:, 0], pairs[:, 1]
        area = masks.areas()
        iou = seam_iou(inter, in_a, in_b, area[a], area[b], whole[a], whole[b])
        same = pairs[iou > self.merge_threshold]
        order = merge_order(whole, scores)
        pos = torch.empty_like(order)
        pos[order] = torch.arange(num, device=order.device)
        a, b = pos[same[:, 0]], pos[same[:, 1]]
        kept = order[greedy_keep_sparse(num, torch.maximum(a, b), torch.minimum(a, b))]
        self._log_merge(num, num - len(kept), len(tiles), len(pairs))
        return kept[torch.sort(scores[kept], descending=True, stable=True).indices]

    def _log_merge(self, num: int, removed: int, num_tiles: int, num_pairs: int) -> None:
        self.num_detections += num
        self.num_merged += removed
        logger.debug(f"tiles: {removed} of {num} detections were cross-tile copies ({num_tiles} tiles, "
                     f"{num_pairs} same-class pairs compared)")
        log_every_n_seconds(logging.INFO, f"tiles: merged {self.num_merged} cross-tile copies of "
                            f"{self.num_detections} tile detections so far in this process", n=60, name=__name__)

    def __call__(self, model, x: dict) -> dict:
        """The output dict of one input (``WSSISSOLOv2.inference`` conventions)."""
        image = x["image"]
        h, w = image.shape[-2:]
        output_hw = (int(x.get("height", h)), int(x.get("width", w)))
        points = x.get("point_instances")
        decoder = model.point_decoder
        if points is not None and getattr(decoder, "uses_points", False):
            result = self.decode_points(model, image, points)
        elif points is not None:  # SSIS threshold baseline: every tile, merged
            decode = lambda heads: decoder(heads, points)["instances"]  # noqa: E731
            result = {"instances": self.decode_plain(model, image, decode, decoder.max_per_image),
                      "point_stats": decoder.stats(points)}
        else:
            result = {"instances": self.decode_plain(model, image, model.plain_decoder,
                                                     model.plain_decoder.args["max_per_img"])}
        result["instances"] = _resize_instances(result["instances"], output_hw)
        return result


def _resize_instances(instances: Instances, output_hw: Tuple[int, int]) -> Instances:
    """Instances at the input image size -> at ``output_hw`` (no-op when equal, the usual case with tiles)."""
    h, w = instances.image_size
    if (h, w) == tuple(output_hw):
        return instances
    oh, ow = output_hw
    out = Instances(tuple(output_hw))
    for name, value in instances.get_fields().items():
        if isinstance(value, CroppedMasks):
            value = value.to_dense()
        if name == "pred_masks":
            value = F.interpolate(value[:, None].float(), size=(oh, ow), mode="nearest")[:, 0] > 0.5
        elif name == "pred_boxes":
            value = Boxes(value.tensor * value.tensor.new_tensor([ow / w, oh / h, ow / w, oh / h]))
        elif name == "pred_points":
            value = value * value.new_tensor([ow / w, oh / h])
        out.set(name, value)
    return out


def build_tiled_inference(cfg, min_input_side: int = 1) -> Optional[TiledInference]:
    """``TiledInference`` of ``cfg.INPUT.TILE``, or None when tiles are off (SIZE 0)."""
    if cfg.INPUT.TILE.SIZE == 0:
        return None
    return TiledInference(cfg, min_input_side=min_input_side)
