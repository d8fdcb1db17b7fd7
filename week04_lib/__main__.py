"""``python -m week04_lib``: see ``week04_lib.cli``."""

import sys

from .cli import main

sys.exit(main())
