"""COCO ``segmentation`` <-> binary masks: decode polygons / RLE, encode masks as compressed RLE."""
import numpy as np
import pycocotools.mask as mask_util

__all__ = ["decode_segmentation", "encode_masks"]


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


def encode_masks(masks: np.ndarray) -> list:
    """(N, H, W) bool masks -> N compressed COCO RLEs ``{"size": [H, W], "counts": str}`` (json-ready)."""
    if len(masks) == 0:
        return []
    rles = mask_util.encode(np.asfortranarray(np.asarray(masks).transpose(1, 2, 0).astype(np.uint8)))
    for r in rles:
        r["counts"] = r["counts"].decode("ascii")
    return rles
