"""Masks <-> polygons traced along pixel EDGES (QuPath GeoJSON, Label Studio polygons).

Coordinates: (x, y) = (column, row) of pixel **corners**: pixel (row i, col j) is the unit square
[j, j + 1] x [i, i + 1], so a mask's polygon covers exactly its pixels' area (tracing through pixel
centres, as ``cv2.findContours`` does, shrinks every object by half a pixel). Vertices are integers and
every edge is horizontal or vertical; collinear vertices are dropped.

Rings: the exterior of every part goes clockwise on screen (y down), i.e. a positive shoelace area on
the numbers (GeoJSON's right-hand rule), holes the other way. Parts are the mask's 4-connected
components: two pixels touching only at a corner are two parts (two rings that share that vertex), and
a hole is the 8-connected background inside a part. Rasterising back (:func:`rasterize_rings`: a pixel is
in when its centre is inside an odd number of rings) returns the mask exactly.
"""
from typing import List, Sequence, Tuple

import cv2
import numpy as np

__all__ = ["mask_to_edge_polygons", "rasterize_rings", "polygons_area"]

Polygon = Tuple[np.ndarray, List[np.ndarray]]  # (exterior (K, 2) int, [hole (K, 2) int, ...])


def _edges(mask: np.ndarray):
    """Directed boundary edges of an (h, w) bool mask: start (E, 2), end (E, 2) as (x, y) corners,
    direction (E,) 0 east, 1 south, 2 west, 3 north (object on the right-hand side), and the pixel
    (row, col) on the right of each edge."""
    p = np.pad(mask, 1)
    inner = p[1:-1, 1:-1]
    starts, ends, dirs, pix = [], [], [], []
    # (neighbour that must be out, start corner offset (dx, dy), end corner offset, direction)
    for out, s, e, d in ((p[:-2, 1:-1], (0, 0), (1, 0), 0), (p[1:-1, 2:], (1, 0), (1, 1), 1),
                         (p[2:, 1:-1], (1, 1), (0, 1), 2), (p[1:-1, :-2], (0, 1), (0, 0), 3)):
        r, c = np.nonzero(inner & ~out)
        starts.append(np.stack([c + s[0], r + s[1]], 1))
        ends.append(np.stack([c + e[0], r + e[1]], 1))
        dirs.append(np.full(len(r), d))
        pix.append(np.stack([r, c], 1))
    return np.concatenate(starts), np.concatenate(ends), np.concatenate(dirs), np.concatenate(pix)


def _rings(start: np.ndarray, end: np.ndarray, direction: np.ndarray, width: int):
    """Chain directed edges into closed rings (vectorised: the successor permutation, its cycles by
    pointer jumping). At a corner where two rings meet (two outgoing edges) the ring turns right, which
    keeps parts touching at a corner apart. Returns (ring label (E,), order (E,) of edges along rings)."""
    n = len(start)
    vid = lambda xy: xy[:, 1] * (width + 2) + xy[:, 0]  # noqa: E731  (corner id)
    sv, ev = vid(start), vid(end)
    by_start = np.argsort(sv, kind="stable")
    first = np.searchsorted(sv[by_start], ev, "left")
    count = np.searchsorted(sv[by_start], ev, "right") - first
    cand0 = by_start[first]
    cand1 = by_start[np.minimum(first + 1, n - 1)]
    right_turn = (direction + 1) % 4
    nxt = np.where((count == 2) & (direction[cand0] != right_turn), cand1, cand0)
    # ring label = smallest edge index on the ring (pointer jumping over the successor permutation)
    label, jump = np.arange(n), nxt.copy()
    for _ in range(max(1, int(np.ceil(np.log2(max(n, 2))))) + 1):
        label = np.minimum(label, label[jump])
        jump = jump[jump]
    # position along the ring: distance to the ring's last edge (whose successor is the ring's first edge)
    last = nxt == label
    dist = (~last).astype(np.int64)
    jump = np.where(last, np.arange(n), nxt)
    for _ in range(max(1, int(np.ceil(np.log2(max(n, 2))))) + 1):
        dist = dist + dist[jump]
        jump = jump[jump]
    return label, np.lexsort((-dist, label))


def mask_to_edge_polygons(mask: np.ndarray, offset: Tuple[int, int] = (0, 0)) -> List[Polygon]:
    """Polygons of a binary mask, traced along pixel edges (module docstring: coordinates, orientation).

    Args:
        mask: (H, W) bool (or 0/1) array.
        offset: (x0, y0) added to every vertex (a crop's position in its image).

    Returns:
        one (exterior, holes) per 4-connected part, in the order of the parts' first pixel (row-major):
        exterior (K, 2) int64 [x, y] vertices, closed (last == first), holes a list of such rings.
        An empty mask gives [].
    """
    mask = np.asarray(mask, bool)
    if not mask.any():
        return []
    start, end, direction, pix = _edges(mask)
    label, order = _rings(start, end, direction, mask.shape[1])
    n_parts, parts = cv2.connectedComponents(mask.astype(np.uint8), connectivity=4)
    rings = {}
    for lab in np.unique(label):
        idx = order[label[order] == lab]
        d = direction[idx]
        keep = d != np.roll(d, 1)  # a vertex where the direction changes
        xy = start[idx][keep]
        ring = np.concatenate([xy, xy[:1]]) + np.asarray(offset, np.int64)
        rings.setdefault(int(parts[tuple(pix[idx[0]])]), []).append(ring)
    out = []
    for part in sorted(rings):
        exterior = [r for r in rings[part] if _signed_area(r) > 0]
        holes = [r for r in rings[part] if _signed_area(r) < 0]
        assert len(exterior) == 1, "a 4-connected part has one outer boundary"
        out.append((exterior[0], holes))
    return out


def _signed_area(ring: np.ndarray) -> float:
    x, y = ring[:, 0].astype(np.float64), ring[:, 1].astype(np.float64)
    return 0.5 * float(np.sum(x[:-1] * y[1:] - x[1:] * y[:-1]))


def polygons_area(polygons: Sequence[Polygon]) -> int:
    """Pixel area of :func:`mask_to_edge_polygons` output (exteriors minus holes)."""
    return int(round(sum(_signed_area(e) + sum(_signed_area(h) for h in holes) for e, holes in polygons)))


def rasterize_rings(rings: Sequence[np.ndarray], height: int, width: int) -> np.ndarray:
    """Rasterise closed rings of pixel-corner vertices (horizontal / vertical edges, as traced by
    :func:`mask_to_edge_polygons`): a pixel is in when its centre lies inside an odd number of rings
    (even-odd rule, so holes and touching parts come out right). Vectorised over all edges.

    Args:
        rings: (K, 2) [x, y] arrays, closed or not; coordinates are rounded to integers.
        height, width: the output size; vertices outside [0, W] x [0, H] are clipped.

    Returns:
        (H, W) bool mask.
    """
    rings = [np.rint(np.asarray(r, np.float64)).astype(np.int64) for r in rings if len(r)]
    if not rings:
        return np.zeros((height, width), bool)
    a = np.concatenate([r for r in rings])
    b = np.concatenate([np.roll(r, -1, axis=0) for r in rings])
    vertical = (a[:, 0] == b[:, 0]) & (a[:, 1] != b[:, 1])
    if ((a[:, 0] != b[:, 0]) & (a[:, 1] != b[:, 1])).any():
        raise ValueError("rasterize_rings takes rings of horizontal and vertical edges only (pixel-edge polygons)")
    x = np.clip(a[vertical, 0], 0, width)
    y0 = np.clip(np.minimum(a[vertical, 1], b[vertical, 1]), 0, height)
    y1 = np.clip(np.maximum(a[vertical, 1], b[vertical, 1]), 0, height)
    diff = np.zeros((height + 1, width + 1), np.int64)
    np.add.at(diff, (y0, x), 1)
    np.add.at(diff, (y1, x), -1)
    crossings = np.cumsum(diff, axis=0)[:height]  # vertical edges at corner column x covering row r
    return (np.cumsum(crossings, axis=1)[:, :width] % 2).astype(bool)
