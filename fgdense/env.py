"""``python -m fgdense.env``: fgdense's version and its key dependencies', each against its tested range.

The work is :mod:`fgdense.versions`'; this module is only the command (``import fgdense`` reads
``versions`` itself, so running this file does not import it twice).
"""

import sys

from .versions import main

if __name__ == "__main__":
    sys.exit(main())
