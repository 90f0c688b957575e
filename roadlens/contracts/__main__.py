"""``python -m roadlens.contracts [--record [--overwrite]]``: see :mod:`roadlens.contracts`."""

import sys

from roadlens.contracts import main

sys.exit(main())
