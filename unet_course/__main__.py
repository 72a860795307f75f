"""``python -m unet_course`` runs the ``unet-course`` command line; ``torchrun -m unet_course train`` needs it."""

import sys

from .cli import main

sys.exit(main())
