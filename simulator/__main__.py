"""``python -m simulator --host H --port P [options]``: see ``comfyfarm.simulator.cli``."""

import sys

from comfyfarm.simulator.cli import main

sys.exit(main())
