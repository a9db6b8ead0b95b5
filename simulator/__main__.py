"""``python -m simulator --host H --port P [options]``: see ``simulator.cli``."""

import sys

from simulator.cli import main

sys.exit(main())
