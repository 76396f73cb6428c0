"""`python -m bridge.simulator FILE.ami ...`: the AMI simulator on its own."""

import sys

from bridge.simulator.cli import main

sys.exit(main())
