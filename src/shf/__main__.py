"""``python -m shf ...``: the command line, as ``torchrun -m shf train ...`` launches it."""

import sys

from shf.cli import main

if __name__ == "__main__":
    sys.exit(main())
