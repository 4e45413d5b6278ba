"""Fixtures for the operator's unit tests (no cluster)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from operator_testlib import CRD_PATH

from mlmodel_operator.settings import OperatorSettings


@pytest.fixture
def settings() -> OperatorSettings:
    """Operator settings with fixed values, independent of the caller's environment."""
    return OperatorSettings(default_image="mlmodel-server:test", cluster_domain="cluster.local")


@pytest.fixture(scope="session")
def crd() -> dict[str, Any]:
    """The CRD document."""
    doc: dict[str, Any] = yaml.safe_load(CRD_PATH.read_text())
    return doc
