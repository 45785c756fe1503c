# Moved to wssis_d2.formats.importers; this old import path is kept for users' scripts.
from ...formats.importers import *  # noqa: F401,F403
from ...formats.importers import __all__  # noqa: F401
