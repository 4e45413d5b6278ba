"""`python -m bench.startup`: the cold start benchmark."""

import sys

from bench.startup.run import main

sys.exit(main())
