"""Operator settings come from MLOP_* environment variables."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mlmodel_operator.settings import OperatorSettings


def test_defaults_watch_the_whole_cluster_on_loopback_metrics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("MLOP_NAMESPACES", "MLOP_METRICS_HOST", "MLOP_DRIFT_INTERVAL_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    settings = OperatorSettings()
    assert settings.namespaces == ()
    assert settings.metrics_host == "127.0.0.1"
    assert settings.drift_interval_seconds == 60.0


def test_env_sets_namespaces_as_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOP_NAMESPACES", "models, staging,")
    monkeypatch.setenv("MLOP_DRIFT_INTERVAL_SECONDS", "2.5")
    monkeypatch.setenv("MLOP_LOG_FORMAT", "json")
    monkeypatch.setenv("MLOP_DEFAULT_IMAGE", "mlmodel-server:9")
    settings = OperatorSettings()
    assert settings.namespaces == ("models", "staging")
    assert settings.drift_interval_seconds == 2.5
    assert settings.log_format == "json"
    assert settings.default_image == "mlmodel-server:9"


def test_bad_env_value_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOP_DRIFT_INTERVAL_SECONDS", "0")
    with pytest.raises(ValidationError, match="drift_interval_seconds"):
        OperatorSettings()
