"""COCO categories -> contiguous class indices: the one rule every loader, exporter and MRN stage uses.

The rule is detectron2's ``load_coco_json``: category ids sorted ascending, contiguous index = rank.
A class therefore always selects the same SOLOv2 class channel and the same MRN heatmap channel.
"""
from typing import Dict, Sequence

__all__ = ["contiguous_category_map", "category_metadata"]


def contiguous_category_map(categories: Sequence[dict]) -> Dict[int, int]:
    """Original category id -> contiguous class index (ids sorted ascending, index = rank).

    Raises:
        ValueError: on duplicate ids.
    """
    ids = sorted(int(c["id"]) for c in categories)
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate category ids in {ids}")
    return {cid: i for i, cid in enumerate(ids)}


def category_metadata(categories: Sequence[dict], where: str = "categories") -> dict:
    """detectron2 metadata of COCO ``categories``: ``thing_classes`` (names in contiguous order; the id
    as a string where a category has no name) and ``thing_dataset_id_to_contiguous_id``.

    Raises:
        ValueError naming ``where`` when there is no category.
    """
    if not categories:
        raise ValueError(f"{where}: no categories")
    id_map = contiguous_category_map(categories)
    names = {int(c["id"]): c.get("name", str(c["id"])) for c in categories}
    return {"thing_classes": [names[i] for i in sorted(id_map)], "thing_dataset_id_to_contiguous_id": id_map}
