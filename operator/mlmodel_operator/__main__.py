"""`python -m mlmodel_operator` / `mlmodel-operator`: run the operator against the cluster."""

from __future__ import annotations

import logging

import kopf

from mlmodel_operator.main import register
from mlmodel_operator.settings import OperatorSettings


def main() -> None:
    """Load MLOP_* settings, register the handlers and run kopf until SIGINT/SIGTERM."""
    config = OperatorSettings()
    kopf.configure(
        verbose=config.log_level == "debug",
        log_format=kopf.LogFormat.JSON if config.log_format == "json" else kopf.LogFormat.FULL,
    )
    logging.getLogger().setLevel(config.log_level.upper())
    registry = kopf.OperatorRegistry()
    register(registry, config)
    kopf.run(
        registry=registry,
        standalone=True,
        clusterwide=not config.namespaces,
        namespaces=config.namespaces,
        memo=kopf.Memo(),
    )


if __name__ == "__main__":
    main()
