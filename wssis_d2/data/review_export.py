# Moved to wssis_d2.formats.review_export; this old import path is kept for users' scripts.
from ..formats.review_export import *  # noqa: F401,F403
from ..formats.review_export import __all__  # noqa: F401
