"""QuPath GeoJSON: masks -> one FeatureCollection per image -> masks again, rasterised by matplotlib's
point-in-polygon test at the pixel centres (independent of the writer's code) and by the module's own reader."""
import json

import numpy as np
from matplotlib.path import Path

from formats_cases import hard_masks, to_coco
from wssis_d2.formats.qupath import export_qupath, geometry_rings, read_qupath


def _fill(geometry, h, w):
    """Pixels whose centre (j + 0.5, i + 0.5) is inside an odd number of the geometry's rings."""
    yy, xx = np.mgrid[:h, :w]
    centres = np.stack([xx.ravel() + 0.5, yy.ravel() + 0.5], 1)
    out = np.zeros(h * w, bool)
    for ring in geometry_rings(geometry):
        out ^= Path(ring).contains_points(centres)
    return out.reshape(h, w)


def test_geojson_round_trip(tmp_path):
    masks, clicks, scores, cats = hard_masks()
    coco = to_coco(masks, clicks, scores, cats)
    counts = export_qupath(coco, str(tmp_path))
    data = json.load(open(tmp_path / "a" / "img 1.geojson"))
    assert data["type"] == "FeatureCollection" and len(data["features"]) == len(masks)
    h, w = masks.shape[1:]
    for f, m, s, xy in zip(data["features"], masks, scores, clicks):
        g = f["geometry"]
        np.testing.assert_array_equal(_fill(g, h, w), m)  # pixel edges: every pixel, no half-pixel shrink
        polygons = [g["coordinates"]] if g["type"] == "Polygon" else g["coordinates"]
        assert all(ring[0] == ring[-1] for poly in polygons for ring in poly)  # closed rings
        props = f["properties"]
        assert props["objectType"] == "detection" and props["classification"]["name"] in ("nucleus", "cell")
        assert len(props["classification"]["color"]) == 3
        assert props["measurements"]["score"] == s
        if not np.isnan(xy).any():
            assert (props["measurements"]["click_x"], props["measurements"]["click_y"]) == tuple(xy)
    types = [f["geometry"]["type"] for f in data["features"]]
    assert types[1] == "MultiPolygon" and types[2] == "MultiPolygon"  # two parts; three corner-touching parts
    assert types.count("Polygon") == len(masks) - 2  # one-part masks are never MultiPolygons
    assert len(data["features"][0]["geometry"]["coordinates"]) == 2  # the ring: exterior + one hole
    assert data["features"][0]["geometry"]["coordinates"][0] == [[1, 1], [8, 1], [8, 8], [1, 8], [1, 1]]
    assert counts["holes"] == 1 and counts["MultiPolygons (several parts)"] == 2
    back = read_qupath(str(tmp_path / "a" / "img 1.geojson"), h, w)
    np.testing.assert_array_equal(np.stack([b["mask"] for b in back]), masks)  # overlaps survive
    assert len({b["id"] for b in back}) == len(masks)


def test_annotations_and_many_objects(tmp_path):
    h, w, n = 20, 16, 300  # > 255 one-pixel objects, on every border
    masks = np.zeros((n, h, w), bool)
    masks[np.arange(n), np.arange(n) // w, np.arange(n) % w] = True
    export_qupath(to_coco(masks, np.full((n, 2), np.nan), np.ones(n), np.full(n, 3)), str(tmp_path),
                  object_type="annotation")
    back = read_qupath(str(tmp_path / "a" / "img 1.geojson"), h, w)
    assert {b["objectType"] for b in back} == {"annotation"}
    np.testing.assert_array_equal(np.stack([b["mask"] for b in back]), masks)
