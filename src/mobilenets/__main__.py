"""``python -m mobilenets`` (and ``torchrun -m mobilenets train ...``)."""

import sys

from mobilenets.cli import main

sys.exit(main())
