"""Instance masks stored as their tight box crops (``CroppedMasks``), for large images with many objects.

A dense (K, H, W) bool tensor costs K x H x W bytes: 20,000 objects on a 4096 x 4096 image are 335 GB. Here
each mask keeps only the pixels of its tight box, so memory follows the sum of the objects' box areas,
i.e. the image area they cover, not K x H x W.

Coordinates: image pixels; a box is (x0, y0, x1, y1) long, x1 / y1 exclusive (an empty mask has an empty box).
Storage: ``data`` (N,) bool holds the crops one after the other, each row-major; crop k starts at
``offsets[k]`` and has ``sizes[k]`` = box width x height pixels. Shape shorthand: K masks, P queries.

``CroppedMasks`` is a valid ``Instances`` field (``len``, indexing, ``cat``, ``to``); ``to_dense`` gives
the usual (K, H, W) bool masks, ``to_rles`` pycocotools RLEs at the image size without a dense mask.
"""
from typing import List, Sequence, Tuple

import numpy as np
import pycocotools.mask as mask_util
import torch

from .postprocess import mask_boxes

__all__ = ["CroppedMasks", "ragged_arange"]

# Elements per vectorised step of the queries (bounds their temporary memory: ~50 bytes per element).
_CHUNK = 1 << 22


def ragged_arange(sizes: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Enumerate K ranges [0, sizes[k]) at once.

    Args:
        sizes: (K,) long >= 0.

    Returns:
        owner (N,) long: the range of each element; local (N,) long: its position in the range
        (N = sizes.sum()).
    """
    sizes = sizes.to(torch.long)
    owner = torch.repeat_interleave(torch.arange(len(sizes), device=sizes.device), sizes)
    starts = torch.cumsum(sizes, 0) - sizes
    local = torch.arange(len(owner), device=sizes.device) - starts[owner]
    return owner, local


def _rect_sizes(rects: torch.Tensor) -> torch.Tensor:
    return (rects[:, 2] - rects[:, 0]).clamp(min=0) * (rects[:, 3] - rects[:, 1]).clamp(min=0)


def _chunks(sizes: torch.Tensor) -> List[Tuple[int, int]]:
    """Consecutive [start, end) query ranges of at most ~``_CHUNK`` elements each (at least one query)."""
    if len(sizes) == 0:
        return []
    ends = torch.cumsum(sizes, 0)
    out, start, done = [], 0, 0
    while start < len(sizes):
        end = int(torch.searchsorted(ends, done + _CHUNK, right=True))
        end = max(end, start + 1)
        out.append((start, end))
        done = int(ends[end - 1])
        start = end
    return out


class CroppedMasks:
    """K bool masks of one image, each stored inside its tight box (module docstring)."""

    def __init__(self, data: torch.Tensor, boxes: torch.Tensor, image_hw: Tuple[int, int]):
        """
        Args:
            data: (N,) bool, the crops row-major one after the other.
            boxes: (K, 4) long image boxes of the crops, N = sum of their areas.
            image_hw: (H, W) of the image.
        """
        self.data = data
        self.boxes = boxes.to(torch.long)
        self.image_hw = (int(image_hw[0]), int(image_hw[1]))
        self.sizes = _rect_sizes(self.boxes)
        self.offsets = torch.cumsum(self.sizes, 0) - self.sizes

    # ------------------------------------------------------------------ construction and Instances API
    @classmethod
    def from_dense(cls, masks: torch.Tensor, image_hw: Tuple[int, int], origin: Sequence[int] = (0, 0)
                   ) -> "CroppedMasks":
        """(K, h, w) bool masks whose pixel (0, 0) is image pixel ``origin`` = (x, y) -> their crops."""
        boxes = mask_boxes(masks).to(torch.long)  # tile pixels, zeros for an empty mask
        owner, local = ragged_arange(_rect_sizes(boxes))
        width = (boxes[:, 2] - boxes[:, 0])[owner]
        data = masks[owner, boxes[owner, 1] + local // width, boxes[owner, 0] + local % width]
        shift = torch.tensor([origin[0], origin[1]] * 2, dtype=torch.long, device=masks.device)
        return cls(data.to(torch.bool), boxes + shift, image_hw)

    @classmethod
    def cat(cls, items: Sequence["CroppedMasks"]) -> "CroppedMasks":
        return cls(torch.cat([m.data for m in items]), torch.cat([m.boxes for m in items]), items[0].image_hw)

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, item) -> "CroppedMasks":
        if isinstance(item, int):
            item = slice(item, item + 1 if item != -1 else None)
        if isinstance(item, slice):
            idx = torch.arange(len(self), device=self.boxes.device)[item]
        else:
            idx = torch.as_tensor(item, device=self.boxes.device)
            if idx.dtype == torch.bool:
                idx = torch.nonzero(idx).squeeze(1)
        owner, local = ragged_arange(self.sizes[idx])
        return CroppedMasks(self.data[self.offsets[idx][owner] + local], self.boxes[idx], self.image_hw)

    def to(self, *args, **kwargs) -> "CroppedMasks":
        return CroppedMasks(self.data.to(*args, **kwargs), self.boxes.to(*args, **kwargs), self.image_hw)

    @property
    def device(self) -> torch.device:
        return self.boxes.device

    # ------------------------------------------------------------------ queries
    def areas(self) -> torch.Tensor:
        """(K,) long pixel counts."""
        cum = torch.cat([self.data.new_zeros(1, dtype=torch.long), torch.cumsum(self.data, 0)])
        return cum[self.offsets + self.sizes] - cum[self.offsets]

    def _pixels(self, idx: torch.Tensor, rects: torch.Tensor, coords: bool = False):
        """The pixels of mask ``idx[p]`` inside ``rects[p]`` (each inside that mask's box), all queries
        enumerated row-major: (query of each element, its value[, its image y, x])."""
        owner, local = ragged_arange(_rect_sizes(rects))
        r = rects[owner]
        width = r[:, 2] - r[:, 0]
        box = self.boxes[idx[owner]]
        y, x = r[:, 1] + local // width, r[:, 0] + local % width
        pos = self.offsets[idx[owner]] + (y - box[:, 1]) * (box[:, 2] - box[:, 0]) + (x - box[:, 0])
        return (owner, self.data[pos], y, x) if coords else (owner, self.data[pos])

    def window(self, idx: torch.Tensor, rect: Sequence[int]) -> torch.Tensor:
        """(P, h, w) bool: masks ``idx`` inside one image rectangle ``rect`` = (x0, y0, x1, y1)."""
        x0, y0, x1, y1 = (int(v) for v in rect)
        rects = self._clip(idx, torch.tensor([[x0, y0, x1, y1]], device=self.device).expand(len(idx), 4))
        owner, on, y, x = self._pixels(idx, rects, coords=True)
        out = torch.zeros((len(idx), y1 - y0, x1 - x0), dtype=torch.bool, device=self.device)
        out[owner[on], y[on] - y0, x[on] - x0] = True
        return out

    def _clip(self, idx: torch.Tensor, rects: torch.Tensor) -> torch.Tensor:
        box = self.boxes[idx]
        out = torch.cat([torch.maximum(rects[:, :2], box[:, :2]), torch.minimum(rects[:, 2:], box[:, 2:])], 1)
        return torch.cat([out[:, :2], torch.maximum(out[:, 2:], out[:, :2])], 1)  # empty stays empty

    def count_in(self, idx: torch.Tensor, rects: torch.Tensor) -> torch.Tensor:
        """(P,) long: pixels of mask ``idx[p]`` inside image rectangle ``rects[p]`` ((P, 4) long)."""
        return self._count(idx, None, self._clip(idx, rects.to(torch.long)))

    def and_count(self, idx_a: torch.Tensor, idx_b: torch.Tensor, rects: torch.Tensor) -> torch.Tensor:
        """(P,) long: pixels set in both mask ``idx_a[p]`` and mask ``idx_b[p]`` inside ``rects[p]``."""
        return self._count(idx_a, idx_b, self._clip(idx_b, self._clip(idx_a, rects.to(torch.long))))

    def _count(self, idx_a: torch.Tensor, idx_b, rects: torch.Tensor) -> torch.Tensor:
        """Set pixels of mask ``idx_a[p]`` (and of ``idx_b[p]`` unless None) in ``rects[p]`` (inside their
        boxes). Cost: the rectangles' areas, in chunks of bounded memory."""
        out = torch.zeros(len(rects), dtype=torch.long, device=self.device)
        for s, e in _chunks(_rect_sizes(rects)):
            owner, on = self._pixels(idx_a[s:e], rects[s:e])
            if idx_b is not None:
                on = on & self._pixels(idx_b[s:e], rects[s:e])[1]  # the same enumeration: elements line up
            out[s:e] = torch.bincount(owner[on], minlength=e - s)
        return out

    # ------------------------------------------------------------------ outputs
    def to_dense(self) -> torch.Tensor:
        """(K, H, W) bool masks at the image size."""
        out = torch.zeros((len(self),) + self.image_hw, dtype=torch.bool, device=self.device)
        owner, local = ragged_arange(self.sizes)
        on = self.data
        owner, local = owner[on], local[on]
        box = self.boxes[owner]
        width = box[:, 2] - box[:, 0]
        out[owner, box[:, 1] + local // width, box[:, 0] + local % width] = True
        return out

    def to_rles(self) -> List[dict]:
        """pycocotools RLEs ({"size": [H, W], "counts": bytes}) at the image size, one per mask, as
        ``pycocotools.mask.encode`` of ``to_dense()`` gives, computed from the crops (no dense mask)."""
        h, w = self.image_hw
        num = len(self)
        if num == 0:
            return []
        owner, local = ragged_arange(self.sizes.cpu())
        on = self.data.cpu()
        owner, local = owner[on], local[on]
        box = self.boxes.cpu()[owner]
        width = box[:, 2] - box[:, 0]
        # column-major (Fortran) pixel index, as RLE counts them, sorted per mask
        col_major = (box[:, 0] + local % width) * h + box[:, 1] + local // width
        key = torch.sort(owner * (h * w) + col_major).values
        owner, pos = key // (h * w), key % (h * w)
        starts = torch.ones_like(pos, dtype=torch.bool)
        starts[1:] = (owner[1:] != owner[:-1]) | (pos[1:] != pos[:-1] + 1)
        ends = torch.ones_like(starts)
        ends[:-1] = starts[1:]
        run_owner, run_start, run_end = owner[starts], pos[starts], pos[ends] + 1
        prev_end = torch.zeros_like(run_end)
        prev_end[1:] = torch.where(run_owner[1:] == run_owner[:-1], run_end[:-1], 0)
        runs = torch.bincount(run_owner, minlength=num)
        # counts of mask k: gap, length, gap, length, ..., the tail to the image end (2 x runs + 1 numbers)
        block = 2 * runs + 1
        block_start = torch.cumsum(block, 0) - block
        rank = torch.arange(len(run_owner)) - (torch.cumsum(runs, 0) - runs)[run_owner]
        counts = torch.zeros(int(block.sum()), dtype=torch.long)
        at = block_start[run_owner] + 2 * rank
        counts[at] = run_start - prev_end
        counts[at + 1] = run_end - run_start
        last_end = torch.zeros(num, dtype=torch.long)
        last_end.scatter_reduce_(0, run_owner, run_end, reduce="amax")
        counts[block_start + block - 1] = h * w - last_end
        parts = np.split(counts.numpy().astype(np.uint32), np.cumsum(block.numpy())[:-1])
        # pycocotools takes the counts as a uint32 array (Python int lists cost 2x, most of it in the GC)
        return mask_util.frPyObjects([{"size": [h, w], "counts": p} for p in parts], h, w)
