# Moved to wssis_d2.formats.review_export (the table of every export: wssis_d2.formats.exports); old path kept.
from ..formats.exports import EXPORT_FORMATS, export_labels  # noqa: F401
from ..formats.review_export import *  # noqa: F401,F403
from ..formats.review_export import __all__  # noqa: F401
