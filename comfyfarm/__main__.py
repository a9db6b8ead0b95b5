import sys

from comfyfarm.cli import main

sys.exit(main())
