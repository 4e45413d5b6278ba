"""Entry point for `python -m devcluster.images`."""

import sys

from devcluster.images.cli import main

sys.exit(main())
