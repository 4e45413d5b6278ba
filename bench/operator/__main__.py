"""`python -m bench.operator`: see bench.operator.run."""

import sys

from bench.operator.run import main

sys.exit(main())
