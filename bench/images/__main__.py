"""`python -m bench.images [--from-scratch]`: see bench.images.run."""

import sys

from bench.images.run import main

sys.exit(main())
