"""Decode a COCO ``segmentation`` (polygons, uncompressed or compressed RLE) to a binary mask."""
import numpy as np
import pycocotools.mask as mask_util

__all__ = ["decode_segmentation"]


def decode_segmentation(segm, height, width):
    """Rasterise a COCO segmentation.

    Args:
        segm: a list of polygons ``[[x0, y0, x1, y1, ...], ...]`` in continuous pixel coordinates,
            an uncompressed RLE ``{"size": [H, W], "counts": [int, ...]}`` or a compressed RLE
            ``{"size": [H, W], "counts": str or bytes}``.
        height, width (int): image size.

    Returns:
        np.ndarray: (H, W) bool mask.
    """
    if isinstance(segm, list):
        polygons = [p for p in segm if len(p) >= 6]
        if not polygons:
            return np.zeros((height, width), bool)
        rle = mask_util.merge(mask_util.frPyObjects(polygons, height, width))
    elif isinstance(segm, dict):
        if list(segm.get("size", [])) != [height, width]:
            raise ValueError(f"RLE size {segm.get('size')} differs from the image size {[height, width]}")
        if isinstance(segm["counts"], list):
            rle = mask_util.frPyObjects(segm, height, width)
        else:
            rle = dict(segm)
            if isinstance(rle["counts"], str):
                rle["counts"] = rle["counts"].encode("ascii")
    else:
        raise ValueError(f"Unsupported segmentation of type {type(segm).__name__}")
    return mask_util.decode(rle).astype(bool)
