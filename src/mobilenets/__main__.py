"""``python -m mobilenets`` (and ``torchrun -m mobilenets train ...``)."""

import sys

from .cli import main

sys.exit(main())
