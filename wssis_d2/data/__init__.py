"""Data side of wssis-d2: synthetic dataset, point labels, splits, registration and mapper."""
from .synthetic import SHAPE_CATEGORIES, SHAPE_CLASSES, generate_shapes_dataset, render_shapes_image
