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


def test_default_pod_resources_come_from_mlop_default_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLOP_DEFAULT_CPU_REQUEST", "500m")
    monkeypatch.setenv("MLOP_DEFAULT_CPU_LIMIT", "2")
    monkeypatch.setenv("MLOP_DEFAULT_MEMORY_LIMIT", "")
    monkeypatch.setenv("MLOP_DEFAULT_EPHEMERAL_STORAGE_LIMIT", "10Gi")
    settings = OperatorSettings()
    assert (settings.default_cpu_request, settings.default_cpu_limit) == ("500m", "2")
    assert settings.default_memory_limit == ""
    assert settings.default_ephemeral_storage_limit == "10Gi"


@pytest.mark.parametrize(
    ("env", "value", "named"),
    [
        ("MLOP_DEFAULT_MEMORY_LIMIT", "lots", "default_memory_limit"),
        ("MLOP_DEFAULT_CPU_REQUEST", "", "default_cpu_request"),  # the HPA needs it
        ("MLOP_DEFAULT_MEMORY_REQUEST", "2Gi", "MLOP_DEFAULT_MEMORY_REQUEST 2Gi exceeds"),
        ("MLOP_DEFAULT_EPHEMERAL_STORAGE_REQUEST", "3Gi", "MLOP_DEFAULT_EPHEMERAL_STORAGE_REQ"),
    ],
)
def test_bad_default_resources_are_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, named: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ValidationError, match=named):
        OperatorSettings()


def test_cards_are_read_from_https_and_s3_anonymously_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("MLOP_ARTIFACT_SOURCES", "MLOP_CREDENTIAL_SOURCES", "MLOP_CARD_MAX_BYTES"):
        monkeypatch.delenv(name, raising=False)
    settings = OperatorSettings()
    assert settings.artifact_sources == ("https://", "s3://")
    assert settings.credential_sources == ()
    assert settings.card_max_bytes == 1 << 20


def test_sources_are_comma_separated_prefixes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOP_ARTIFACT_SOURCES", "https://, s3://models/,http://127.0.0.1:8000/,")
    monkeypatch.setenv("MLOP_CREDENTIAL_SOURCES", "s3://models/")
    settings = OperatorSettings()
    assert settings.artifact_sources == ("https://", "s3://models/", "http://127.0.0.1:8000/")
    assert settings.credential_sources == ("s3://models/",)


@pytest.mark.parametrize(
    "prefix", ["https://user@host/", "https://host/?x", "ftp://host/", "https://host/../x"]
)
def test_a_source_the_reader_could_not_match_stops_the_operator(
    monkeypatch: pytest.MonkeyPatch, prefix: str
) -> None:
    monkeypatch.setenv("MLOP_ARTIFACT_SOURCES", f"https://,{prefix}")
    with pytest.raises(ValidationError, match="artifact_sources"):
        OperatorSettings()


def test_prometheus_url_is_unset_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLOP_PROMETHEUS_URL", raising=False)
    assert OperatorSettings().prometheus_url == ""


@pytest.mark.parametrize(
    "url", ["http://prometheus.monitoring:9090", "https://prom.example.com/prometheus/"]
)
def test_prometheus_url_is_an_http_base_url(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("MLOP_PROMETHEUS_URL", f" {url} ")
    assert OperatorSettings().prometheus_url == url


@pytest.mark.parametrize(
    "url",
    [
        "prometheus:9090",
        "ftp://prometheus/",
        "s3://bucket/",
        "http://user:pw@prometheus:9090",
        "http://prometheus:9090/?x=1",
        "http://prometheus:9090/#top",
    ],
)
def test_a_prometheus_url_the_analysis_could_not_query_stops_the_operator(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("MLOP_PROMETHEUS_URL", url)
    with pytest.raises(ValidationError, match="prometheus_url"):
        OperatorSettings()
