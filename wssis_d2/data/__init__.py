"""Data side of wssis-d2: synthetic dataset, point rules, splits, registration and dataset mapper.

See docs/DATA.md for the point-label format and the tools.
"""
from .dataset_mapper import WSSISDatasetMapper
from .datasets import (
    SPLIT_PERCENTS,
    load_point_json,
    register_point_instances,
    register_wssis_shapes,
    register_wssis_splits,
)
from .point_rules import POINT_RULES, centroid_point, interior_point, random_point, sample_point
from .point_utils import is_point_labeled, point_annotations_to_instances
from .splits import make_wssis_splits, split_image_ids, write_wssis_splits
from .synthetic import SHAPE_CATEGORIES, SHAPE_CLASSES, generate_shapes_dataset, render_shapes_image
