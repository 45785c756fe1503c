"""Dataset loaders and registration of wssis-d2."""
from .builtin import SPLIT_PERCENTS, register_wssis_shapes, register_wssis_splits
from .point_instances import load_point_json, register_point_instances
from .user import is_point_json, register_user_datasets
