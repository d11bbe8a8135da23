"""``python -m launch``: the drivestack command line."""

import sys

from launch.cli import main

sys.exit(main())
