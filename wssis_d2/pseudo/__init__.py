"""Pseudo-label plumbing around the model: which dataset dicts the pseudo-labeler reads, merging full GT
with pseudo-labels, registering the result. See docs/PSEUDO_LABELS.md."""
from .data import build_pseudo_label_loader, default_export_path, is_pseudo_label_dataset, pseudo_label_dataset_dicts
from .merge import merge_pseudo_label_files, merge_pseudo_labels, read_json_info, register_pseudo_label_dataset

__all__ = [
    "build_pseudo_label_loader",
    "default_export_path",
    "is_pseudo_label_dataset",
    "pseudo_label_dataset_dicts",
    "merge_pseudo_label_files",
    "merge_pseudo_labels",
    "read_json_info",
    "register_pseudo_label_dataset",
]
