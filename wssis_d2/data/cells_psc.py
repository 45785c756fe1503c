# Moved to wssis_d2.formats.cells_psc; this old import path is kept for users' scripts.
from ..formats.cells_psc import *  # noqa: F401,F403
from ..formats.cells_psc import __all__  # noqa: F401
