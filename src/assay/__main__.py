"""``python -m assay``: the command line.

``python -m`` puts the working directory first on ``sys.path``; it is removed before anything
else is imported, so a ``pandas.py`` lying in the working directory is never imported in place
of the real one. User code is imported only through ``--import``.
"""

import os
import sys

if sys.path and sys.path[0] in ("", os.getcwd()):
    del sys.path[0]

from assay._cli import main  # noqa: E402 - after the sys.path fix, on purpose

sys.exit(main())
