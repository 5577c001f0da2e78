"""``python -m chargepoint``."""

import sys

from chargepoint.cli import main

sys.exit(main())
