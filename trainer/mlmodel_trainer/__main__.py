"""`python -m mlmodel_trainer` is the `mlmodel-train` command."""

from mlmodel_trainer.cli import main

raise SystemExit(main())
