"""`python -m bridge.ami_simulator`: the simulator command's first name, kept for scripts
that use it. The simulator lives in bridge.simulator (`python -m bridge.simulator`)."""

import sys

from bridge.simulator.cli import main

if __name__ == "__main__":
    sys.exit(main())
