"""``python -m lslm`` is the same as the ``lslm`` command."""

import sys

from lslm.cli import main

sys.exit(main())
