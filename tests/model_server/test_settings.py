"""Settings: the operator-server contract (env names, flags over env, probe paths)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from mlmodel_operator import contract
from model_server import settings as server_settings
from model_server.__main__ import load_settings, uvicorn_options
from model_server.connection import HeaderDeadlineProtocol
from model_server.settings import ServerSettings

SHA = "ab" * 32


def test_settings_come_from_the_variables_the_operator_renders(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {
        contract.ENV_MODEL_URI: "s3://models/iris",
        contract.ENV_MODEL_NAME: "iris-prod",
        contract.ENV_MODEL_SHA256: SHA,
        contract.ENV_MODEL_FORMAT: "onnx",
        contract.ENV_HOST: "0.0.0.0",
        contract.ENV_PORT: "9000",
        contract.ENV_WORKERS: "2",
        contract.ENV_LOG_LEVEL: "WARNING",
    }.items():
        monkeypatch.setenv(name, value)
    settings = load_settings([])
    assert settings.model_uri == "s3://models/iris"
    assert settings.model_name == "iris-prod"
    assert settings.model_sha256 == SHA
    assert settings.model_format == "onnx"
    assert (settings.host, settings.port, settings.workers) == ("0.0.0.0", 9000, 2)
    assert settings.log_level == "warning"


def test_probe_paths_and_port_match_the_operator_contract() -> None:
    assert server_settings.ENV_PREFIX == contract.ENV_PREFIX
    assert server_settings.LIVENESS_PATH == contract.LIVENESS_PATH
    assert server_settings.READINESS_PATH == contract.READINESS_PATH
    assert server_settings.DEFAULT_PORT == contract.DEFAULT_PORT


def test_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_SERVER_MODEL_URI", "/from/env")
    monkeypatch.setenv("MODEL_SERVER_PORT", "9000")
    monkeypatch.setenv("MODEL_SERVER_COMPILED", "true")
    settings = load_settings(["--model-uri", "/from/flag", "--no-compiled", "--workers", "3"])
    assert (settings.model_uri, settings.port, settings.compiled, settings.workers) == (
        "/from/flag", 9000, False, 3,
    )  # fmt: skip


def test_cli_defaults_stay_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODEL_SERVER_HOST", raising=False)
    settings = load_settings(["--model-uri", "/m"])
    assert (settings.host, settings.port, settings.workers, settings.compiled) == (
        "127.0.0.1", 8080, 1, True,
    )  # fmt: skip
    assert settings.workdir == Path("/tmp/model-server")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "invalid setting model_uri (MODEL_SERVER_MODEL_URI)"),
        (
            ["--model-uri", "/m", "--model-sha256", "xyz"],
            "model_sha256 (MODEL_SERVER_MODEL_SHA256)",
        ),
        (["--model-uri", "/m", "--port", "70000"], "invalid setting port (MODEL_SERVER_PORT)"),
        (["--model-uri", "/m", "--model-format", "pickle"], "model_format"),
        (["--model-uri", "/m", "--log-level", "loud"], "log_level"),
        (
            ["--model-uri", "/m", "--drift-window", "-1"],
            "invalid setting drift_window (MODEL_SERVER_DRIFT_WINDOW)",
        ),
    ],
)
def test_invalid_settings_exit_2_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str],
    message: str,
) -> None:  # fmt: skip
    monkeypatch.delenv("MODEL_SERVER_MODEL_URI", raising=False)
    with pytest.raises(SystemExit) as caught:
        load_settings(argv)
    assert caught.value.code == 2
    assert message in capsys.readouterr().err


def test_settings_round_trip_through_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    original = ServerSettings(model_uri="/m", model_sha256=SHA, workers=2, compiled=False)
    for name, value in original.to_env().items():
        monkeypatch.setenv(name, value)
    assert ServerSettings() == original  # type: ignore[call-arg]


def test_every_setting_is_documented() -> None:
    for name, field in ServerSettings.model_fields.items():
        assert field.description, f"setting {name} has no description"


def test_request_limits_have_safe_defaults() -> None:
    settings = ServerSettings(model_uri="/m")
    assert settings.max_rows == 10_000
    assert settings.body_timeout_seconds == 5.0
    assert settings.header_timeout_seconds == 5.0
    assert settings.max_connections == 32


def test_uvicorn_does_not_cap_connections_and_runs_the_header_deadline_protocol() -> None:
    options = uvicorn_options(ServerSettings(model_uri="/m", header_timeout_seconds=2.5))
    # uvicorn's limit_concurrency counts idle sockets, so a few of them would refuse the probes.
    assert options.get("limit_concurrency") is None
    assert options["timeout_keep_alive"] == server_settings.KEEP_ALIVE_SECONDS
    protocol = options["http"]
    assert protocol.func is HeaderDeadlineProtocol
    assert protocol.keywords == {"header_timeout": 2.5}
    # Worker processes receive the options pickled.
    assert pickle.loads(pickle.dumps(protocol)).keywords == {"header_timeout": 2.5}


def test_the_drift_window_defaults_to_1000_rows_and_0_turns_it_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert ServerSettings(model_uri="/m").drift_window == 1000
    monkeypatch.setenv("MODEL_SERVER_DRIFT_WINDOW", "0")
    assert load_settings(["--model-uri", "/m"]).drift_window == 0
    assert load_settings(["--model-uri", "/m", "--drift-window", "250"]).drift_window == 250


def test_an_empty_pin_means_not_pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator renders MODEL_SERVER_MODEL_SHA256 empty for an unpinned model."""
    monkeypatch.setenv("MODEL_SERVER_MODEL_SHA256", "")
    assert load_settings(["--model-uri", "/m"]).model_sha256 is None


def test_a_setting_not_in_upper_case_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Env names are read case-insensitively: a lower-case twin must not override the pin."""
    monkeypatch.setenv("MODEL_SERVER_MODEL_URI", "/m")
    monkeypatch.setenv("model_server_model_sha256", SHA)
    with pytest.raises(SystemExit) as caught:
        load_settings([])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "must be upper case" in err and "model_server_model_sha256" in err
