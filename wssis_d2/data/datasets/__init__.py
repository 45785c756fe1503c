"""Dataset loaders and registration of wssis-d2: every name goes through :func:`register_dataset`
(``register.py``: one idempotent function; the same name with another file is an error)."""
from .builtin import SPLIT_PERCENTS, register_wssis_shapes, register_wssis_splits
from .point_instances import load_point_json, register_point_instances
from .register import DATASET_KINDS, add_dataset_kind, dataset_kinds, register_dataset, registered_json
from .user import is_point_json, register_user_datasets
