"""``python -m assay.report report|serve ...``: the same commands as ``assay report|serve``."""

import sys

from ._cli import main

sys.exit(main())
