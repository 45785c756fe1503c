# Moved to wssis_d2.formats.label_images; this old import path is kept for users' scripts.
from ..formats.label_images import *  # noqa: F401,F403
from ..formats.label_images import __all__  # noqa: F401
