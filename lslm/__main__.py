"""``python -m lslm`` is the same as the ``lslm`` command."""

import sys

from lslm.cli import console_main

sys.exit(console_main())
