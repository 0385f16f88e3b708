"""``python -m senet`` (and ``torchrun -m senet``) runs the command line."""

import sys

from senet.cli import main

sys.exit(main())
