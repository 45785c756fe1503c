# Moved to wssis_d2.formats.custom_example; this old import path is kept for users' scripts.
from ..formats.custom_example import *  # noqa: F401,F403
from ..formats.custom_example import __all__  # noqa: F401
