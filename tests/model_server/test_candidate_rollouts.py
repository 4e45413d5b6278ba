"""Candidate rollouts in the server (issue 17, docs/rollouts.md): two versions of a model in one
process, trained with the trainer: an iris forest (stable), an iris logistic regression (a
candidate that disagrees on some rows) and a model of three of iris' four features (a
candidate every four-feature request fails on).

- canary: the exact share per process over every protocol, agreement copies, drift on the
  stable's answers only; sticky values never switch and their share is near the percent;
- a request naming a version is answered by that version only;
- shadow: every answer is the stable's, and the compared/agreed counters equal what both
  models' own answers give;
- a candidate that fails is answered for by the stable and counted as the candidate's error;
  a candidate that fails to load leaves the server ready, says why, and counts nothing;
- copies are dropped and counted when the queue is full;
- gRPC (metadata in and out) and several workers, on real server processes.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError
from server_process import Server, serving
from serverkit import IRIS_FEATURES, ready, server_env
from sklearn.datasets import load_iris
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from devcluster import waiting
from mlmodel_artifact import write_artifact
from mlmodel_trainer.train import TrainConfig, TrainResult, train
from model_server import versions
from model_server.__main__ import load_settings
from model_server.settings import ServerSettings

MODEL = "iris"
STICKY = "X-User-Id"
ROWS: list[list[float]] = load_iris().data.tolist()
WAIT_S = 60.0


@dataclass(frozen=True)
class Trained:
    """A model the trainer fitted, written as an artifact."""

    result: TrainResult
    uri: str
    sha256: str


def publish(result: TrainResult, where: Path) -> Trained:
    uri, card = write_artifact(result.model, result.description, str(where), check_onnx=True)
    return Trained(result, uri, card.sha256)


@pytest.fixture(autouse=True)
def clients_keep_the_process_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    """The process is never busy (Load), so no copy is charged to the budget: the in-process
    test client runs in the server's own process and keeps its CPU near 100 % with requests
    sent one after another, which a real client never does. These tests count every copy; the
    budget has tests of its own (test_candidate_routing.py)."""
    monkeypatch.setattr(versions.Load, "busy", lambda self: False)


@pytest.fixture(scope="module")
def forest(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """The stable version: the trainer's iris forest."""
    result = train(TrainConfig(params={"n_estimators": 10}, name=MODEL))
    return publish(result, tmp_path_factory.mktemp("forest") / "model")


@pytest.fixture(scope="module")
def logistic(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """A candidate that disagrees with the forest on some rows."""
    result = train(TrainConfig(estimator="logistic_regression", name=MODEL))
    return publish(result, tmp_path_factory.mktemp("logistic") / "model")


@pytest.fixture(scope="module")
def narrow(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """A candidate trained on three of iris' four features: every four-feature request fails."""
    root = tmp_path_factory.mktemp("narrow")
    data = load_iris()
    path = root / "iris3.csv"
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow([*IRIS_FEATURES[:3], "species"])
        for row, label in zip(data.data, data.target, strict=True):
            writer.writerow([*row[:3], int(label)])
    result = train(TrainConfig(csv=path, target="species", name=MODEL))
    return publish(result, root / "model")


def settings(stable: Trained, workdir: Path, **overrides: Any) -> ServerSettings:
    return ServerSettings(model_uri=stable.uri, model_name=MODEL, workdir=workdir, **overrides)


@contextmanager
def serving_app(
    stable: Trained, candidate: Trained, tmp_path: Path, **overrides: Any
) -> Iterator[TestClient]:
    """A ready in-process server with `candidate` beside `stable`."""
    with ready(settings(stable, tmp_path, candidate_uri=candidate.uri, **overrides)) as client:
        yield client


# --- reading the answers and the metrics ---------------------------------------------------


def v2_body(rows: list[list[float]]) -> dict[str, Any]:
    data = [v for row in rows for v in row]
    return {"inputs": [{"name": "x", "shape": [len(rows), 4], "datatype": "FP64", "data": data}]}


def predict(client: TestClient, protocol: str, row: list[float], **headers: str) -> tuple[str, Any]:
    """One row through `protocol`: (the Model-Version header, the label)."""
    if protocol == "seed":
        answer = client.post("/predict", json={"input": row}, headers=headers)
        assert answer.status_code == 200, answer.text
        return answer.headers["model-version"], answer.json()["prediction"]
    if protocol == "v1":
        answer = client.post(f"/v1/models/{MODEL}:predict", json={"instances": [row]},
                             headers=headers)  # fmt: skip
        assert answer.status_code == 200, answer.text
        return answer.headers["model-version"], answer.json()["predictions"][0]
    answer = client.post(f"/v2/models/{MODEL}/infer", json=v2_body([row]), headers=headers)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model_version"] == answer.headers["model-version"]
    return answer.headers["model-version"], body["outputs"][0]["data"][0]


def version_labels(client: TestClient, version: str, rows: list[list[float]]) -> list[Any]:
    """What `version` answers for `rows`, asked by name (no split, no copies)."""
    answer = client.post(f"/v2/models/{MODEL}/versions/{version}/infer", json=v2_body(rows))
    assert answer.status_code == 200, answer.text
    assert answer.headers["model-version"] == version
    assert answer.json()["model_version"] == version
    return list(answer.json()["outputs"][0]["data"])


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(text: str) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def metrics(client: TestClient) -> Samples:
    return scrape(client.get("/metrics").text)


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def requests(found: Samples, version: str, role: str, kind: str, outcome: str) -> float:
    return value(found, "model_server_version_requests_total", version=version, role=role,
                 kind=kind, outcome=outcome)  # fmt: skip


def wait_for(what: str, check: Callable[[], bool], read: Callable[[], Any]) -> None:
    """Poll `check` (copies run off the request path) until true; fail showing `read()`."""
    try:
        waiting.wait_until(what, check, WAIT_S, 0.02)
    except waiting.WaitTimeout as exc:
        raise AssertionError(f"{exc}; {read()}") from exc


def copies_done(client: TestClient, compared: int) -> Samples:
    """The metrics once `compared` rows were compared (nothing dropped on the way)."""
    found: Samples = {}

    def check() -> bool:
        found.clear()
        found.update(metrics(client))
        dropped = sum(
            value(found, "model_server_candidate_copies_dropped_total", reason=reason)
            for reason in ("queue_full", "budget")
        )
        assert dropped == 0, "copies were dropped"
        return value(found, "model_server_candidate_compared_rows_total") >= compared

    wait_for(f"{compared} rows compared", check, lambda: {k: v for k, v in found.items()
                                                           if "candidate_" in k[0]})  # fmt: skip
    assert value(found, "model_server_candidate_compared_rows_total") == compared
    return found


# --- without a candidate ----------------------------------------------------------------------


def test_without_a_candidate_answers_name_the_version_and_nothing_is_counted_per_version(
    iris_client: TestClient,
) -> None:
    answer = iris_client.post("/predict", json={"input": ROWS[0]})
    assert answer.headers["model-version"] == "1"
    found = metrics(iris_client)
    assert value(found, "model_server_version_ready", version="1", role="stable") == 1
    assert any(name == "model_server_version_info" for name, _ in found)
    assert not any(name.startswith("model_server_version_requests") for name, _ in found)
    assert not any(name.startswith("model_server_version_duration") for name, _ in found)
    assert value(found, "model_server_candidate_compared_rows_total") == 0


# --- canary ---------------------------------------------------------------------------------


def test_a_canary_of_10_percent_answers_exactly_100_of_1000_requests_over_every_protocol(
    forest: Trained, logistic: Trained, tmp_path: Path
) -> None:
    with serving_app(forest, logistic, tmp_path, candidate_percent=10) as client:
        answered: Counter[str] = Counter()
        by_version: dict[str, list[int]] = {"1": [], "candidate": []}
        for i in range(1000):
            row = i % len(ROWS)
            version, _ = predict(client, ("seed", "v1", "v2")[i % 3], ROWS[row])
            answered[version] += 1
            by_version[version].append(row)
        assert answered == {"1": 900, "candidate": 100}
        # request n (from 0) goes to the candidate when floor((n+1)/10) > floor(n/10)
        assert by_version["candidate"] == [n % len(ROWS) for n in range(9, 1000, 10)]

        stable_labels = version_labels(client, "1", ROWS)
        candidate_labels = version_labels(client, "candidate", ROWS)
        found = copies_done(client, 100)  # the stable predicted each of the candidate's rows
        agree = sum(stable_labels[r] == candidate_labels[r] for r in by_version["candidate"])
        assert value(found, "model_server_candidate_agreed_rows_total") == agree
        assert requests(found, "candidate", "candidate", "answer", "ok") == 100 + 1
        assert requests(found, "1", "stable", "answer", "ok") == 900 + 1
        assert requests(found, "1", "stable", "copy", "ok") == 100
        assert requests(found, "candidate", "candidate", "copy", "ok") == 0
        duration = "model_server_version_duration_seconds_count"
        assert value(found, duration, version="candidate", role="candidate") == 101
        assert value(found, duration, version="1", role="stable") == 901 + 100
        predicted = "model_server_version_predictions_total"
        per_label = Counter(str(candidate_labels[r]) for r in by_version["candidate"])
        per_label.update(str(label) for label in candidate_labels)  # the version_labels call
        for label, count in per_label.items():
            assert value(found, predicted, version="candidate", role="candidate",
                         label=label) == count  # fmt: skip
        # drift watches the stable's answers only: 900 rows + the 150 asked of version 1
        assert value(found, "model_server_drift_window_rows") == 1000  # the window is full
        assert value(found, "model_server_predictions_total", protocol="seed") == 334


def test_drift_sees_only_rows_the_stable_answered(
    forest: Trained, logistic: Trained, tmp_path: Path
) -> None:
    with serving_app(forest, logistic, tmp_path, candidate_percent=50, drift_window=5000) as c:
        for i in range(100):
            predict(c, "seed", ROWS[i])
        version_labels(c, "candidate", ROWS[:10])
        assert value(metrics(c), "model_server_drift_window_rows") == 50


def test_sticky_values_never_switch_and_their_share_is_near_the_percent(
    forest: Trained, logistic: Trained, tmp_path: Path
) -> None:
    users = [f"user-{i}" for i in range(400)]
    with serving_app(
        forest, logistic, tmp_path, candidate_percent=10, sticky_header=STICKY
    ) as client:
        seen: dict[str, set[str]] = {user: set() for user in users}
        for round_ in range(3):
            for i, user in enumerate(users):
                protocol = ("seed", "v1", "v2")[(i + round_) % 3]
                version, _ = predict(client, protocol, ROWS[i % len(ROWS)], **{STICKY: user})
                seen[user].add(version)
        assert {user: s for user, s in seen.items() if len(s) != 1} == {}
        on_candidate = {user for user, s in seen.items() if s == {"candidate"}}
        assert 0.05 <= len(on_candidate) / len(users) <= 0.15, len(on_candidate)
        # requests without the header keep the exact share
        answered = Counter(predict(client, "seed", ROWS[0])[0] for _ in range(100))
        assert answered == {"1": 90, "candidate": 10}
    # at 25 % every user who had the candidate at 10 % still has it
    with serving_app(
        forest, logistic, tmp_path / "25", candidate_percent=25, sticky_header=STICKY
    ) as client:
        at_25 = {u for u in users if predict(client, "v2", ROWS[0], **{STICKY: u})[0] != "1"}
    assert on_candidate < at_25


def test_a_request_naming_a_version_is_answered_by_that_version_only(
    forest: Trained, logistic: Trained, tmp_path: Path
) -> None:
    with serving_app(forest, logistic, tmp_path, candidate_percent=50) as client:
        before = metrics(client)
        for _ in range(20):
            version_labels(client, "candidate", ROWS[:3])
            version_labels(client, "1", ROWS[:3])
        after = metrics(client)
        for version, role in (("candidate", "candidate"), ("1", "stable")):
            moved = requests(after, version, role, "answer", "ok") - requests(
                before, version, role, "answer", "ok"
            )
            assert moved == 20
            assert requests(after, version, role, "copy", "ok") == 0
        assert value(after, "model_server_candidate_compared_rows_total") == 0
        assert client.get(f"/v2/models/{MODEL}").json()["versions"] == ["1", "candidate"]
        meta = client.get(f"/v2/models/{MODEL}/versions/candidate").json()
        assert meta["parameters"]["estimator"] == "LogisticRegression"
        assert client.get(f"/v2/models/{MODEL}/versions/candidate/ready").status_code == 200
        missing = client.post(f"/v2/models/{MODEL}/versions/7/infer", json=v2_body(ROWS[:1]))
        assert missing.status_code == 404
        assert "versions '1' and 'candidate'" in missing.json()["error"]


# --- shadow -----------------------------------------------------------------------------------


def test_shadow_answers_are_the_stables_and_agreement_counts_both_models_answers(
    forest: Trained, logistic: Trained, tmp_path: Path
) -> None:
    with serving_app(
        forest, logistic, tmp_path, candidate_mode="shadow", candidate_percent=100
    ) as client:
        stable_labels = version_labels(client, "1", ROWS)
        candidate_labels = version_labels(client, "candidate", ROWS)
        assert stable_labels != candidate_labels  # the two models differ somewhere
        got = []
        for start in range(0, len(ROWS), 10):  # 15 requests of 10 rows, every protocol
            batch = ROWS[start : start + 10]
            if start % 30 == 0:
                answer = client.post("/predict", json={"inputs": batch})
                labels = answer.json()["predictions"]
            elif start % 30 == 10:
                answer = client.post(f"/v1/models/{MODEL}:predict", json={"instances": batch})
                labels = answer.json()["predictions"]
            else:
                answer = client.post(f"/v2/models/{MODEL}/infer", json=v2_body(batch))
                labels = answer.json()["outputs"][0]["data"]
                assert answer.json()["model_version"] == "1"
            assert answer.status_code == 200 and answer.headers["model-version"] == "1"
            got.extend(labels)
        assert got == stable_labels
        found = copies_done(client, len(ROWS))
        agree = sum(a == b for a, b in zip(stable_labels, candidate_labels, strict=True))
        assert value(found, "model_server_candidate_agreed_rows_total") == agree
        assert requests(found, "candidate", "candidate", "copy", "ok") == 15
        assert requests(found, "candidate", "candidate", "answer", "ok") == 1  # asked by name
        assert requests(found, "1", "stable", "answer", "ok") == 15 + 1


def test_copies_are_dropped_and_counted_when_the_queue_is_full(
    forest: Trained, logistic: Trained, tmp_path: Path
) -> None:
    with serving_app(forest, logistic, tmp_path, candidate_mode="shadow", shadow_queue=0) as client:
        for i in range(12):
            assert predict(client, ("seed", "v1", "v2")[i % 3], ROWS[i])[0] == "1"
        found = metrics(client)
        dropped = "model_server_candidate_copies_dropped_total"
        assert value(found, dropped, reason="queue_full") == 12
        assert value(found, dropped, reason="budget") == 0
        assert value(found, "model_server_candidate_compared_rows_total") == 0
        assert requests(found, "candidate", "candidate", "copy", "ok") == 0


# --- failures ---------------------------------------------------------------------------------


def test_a_candidate_that_fails_is_answered_by_the_stable_and_counted_as_its_error(
    forest: Trained, narrow: Trained, tmp_path: Path
) -> None:
    with serving_app(forest, narrow, tmp_path, candidate_percent=100) as client:
        stable_labels = version_labels(client, "1", ROWS[:30])
        for i in range(30):
            version, label = predict(client, ("seed", "v1", "v2")[i % 3], ROWS[i])
            assert (version, label) == ("1", stable_labels[i])
        found = metrics(client)
        assert requests(found, "candidate", "candidate", "answer", "error") == 30
        assert requests(found, "candidate", "candidate", "answer", "ok") == 0
        assert requests(found, "1", "stable", "answer", "ok") == 30 + 1
        assert value(found, "model_server_candidate_compared_rows_total") == 0
        # a request the stable refuses too is the client's mistake, not the candidate's
        bad = client.post("/predict", json={"input": ["a", 1, 2, 3]})
        assert bad.status_code == 422 and "must be a number" in bad.json()["error"]
        found = metrics(client)
        assert requests(found, "candidate", "candidate", "answer", "error") == 30
        assert requests(found, "1", "stable", "answer", "error") == 1
        # asked by name, the candidate answers alone: its refusal is the answer
        named = client.post(f"/v2/models/{MODEL}/versions/candidate/infer", json=v2_body(ROWS[:1]))
        assert named.status_code == 422
        # a request that names the candidate and is wrong for it is the client's mistake, not
        # the candidate's error (else any client could fail a rollout's maxErrorRate)
        assert requests(metrics(client), "candidate", "candidate", "answer", "error") == 30
        three = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64",
                             "data": ROWS[0][:3]}]}  # fmt: skip
        assert version_labels_of(client, three) == "candidate"


def version_labels_of(client: TestClient, body: dict[str, Any]) -> str:
    answer = client.post(f"/v2/models/{MODEL}/versions/candidate/infer", json=body)
    assert answer.status_code == 200, answer.text
    return str(answer.headers["model-version"])


def test_a_candidate_that_fails_to_load_leaves_the_server_ready_and_says_why(
    forest: Trained, logistic: Trained, tmp_path: Path
) -> None:
    with serving_app(
        forest, logistic, tmp_path, candidate_percent=50, candidate_sha256="0" * 64
    ) as client:
        assert client.get("/v2/health/ready").status_code == 200
        answer = client.get(f"/v2/models/{MODEL}/versions/candidate/ready")
        assert answer.status_code == 503
        error = answer.json()["error"]
        assert error == (
            f"version 'candidate' of model '{MODEL}' failed to load: [ArtifactDigestMismatch]; "
            "the server's log says why"
        )
        assert "\n" not in error
        named = client.post(f"/v2/models/{MODEL}/versions/candidate/infer", json=v2_body(ROWS[:1]))
        assert named.status_code == 503 and named.json()["error"] == error
        for i in range(20):
            assert predict(client, ("seed", "v1", "v2")[i % 3], ROWS[i])[0] == "1"
        found = metrics(client)
        assert (
            value(found, "model_server_version_ready", version="candidate", role="candidate") == 0
        )
        assert value(found, "model_server_version_ready", version="1", role="stable") == 1
        assert not any(name.startswith("model_server_version_requests") for name, _ in found)
        assert client.get(f"/v2/models/{MODEL}").json()["versions"] == ["1"]


# --- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field", "says"),
    [
        ({"candidate_percent": 101}, "candidate_percent", "less than or equal to 100"),
        ({"candidate_percent": -1}, "candidate_percent", "greater than or equal to 0"),
        ({"candidate_mode": "blue"}, "candidate_mode", "'canary' or 'shadow'"),
        ({"sticky_header": "X User"}, "sticky_header", "should match pattern"),
        ({"shadow_queue": -1}, "shadow_queue", "greater than or equal to 0"),
        ({"candidate_sha256": "abc"}, "candidate_sha256", "should match pattern"),
        ({"candidate_version": "a/b"}, "candidate_version", "should match pattern"),
    ],
)
def test_bad_candidate_settings_are_refused_naming_the_setting(
    overrides: dict[str, Any], field: str, says: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        ServerSettings(model_uri="/m", candidate_uri="/c", **overrides)
    (error,) = refused.value.errors()
    assert error["loc"] == (field,) and says in error["msg"]


def test_the_candidate_version_must_differ_from_the_stables(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("MODEL_SERVER_MODEL_URI", "MODEL_SERVER_CANDIDATE_URI"):
        monkeypatch.setenv(name, "/m")
    monkeypatch.setenv("MODEL_SERVER_CANDIDATE_VERSION", "2")
    with pytest.raises(SystemExit) as exit_:
        load_settings(["--model-version", "2"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (
        "mlmodel-server: invalid settings: MODEL_SERVER_CANDIDATE_VERSION ('2') must differ "
        "from MODEL_SERVER_MODEL_VERSION ('2'): the versions name who answered\n"
    )
    # without a candidate the candidate's settings do not apply
    monkeypatch.delenv("MODEL_SERVER_CANDIDATE_URI")
    assert load_settings(["--model-version", "2"]).candidate_uri is None


def test_candidate_settings_come_from_the_env_and_flags_and_load_it_like_a_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sha = "ab" * 32
    env = {
        "MODEL_SERVER_MODEL_URI": "s3://models/iris/v1",
        "MODEL_SERVER_MODEL_NAME": "iris",
        "MODEL_SERVER_CANDIDATE_URI": "s3://models/iris/v2",
        "MODEL_SERVER_CANDIDATE_SHA256": sha,
        "MODEL_SERVER_CANDIDATE_FORMAT": "onnx",
        "MODEL_SERVER_CANDIDATE_MODE": "shadow",
        "MODEL_SERVER_CANDIDATE_PERCENT": "25",
        "MODEL_SERVER_STICKY_HEADER": "X-User-Id",
        "MODEL_SERVER_SHADOW_QUEUE": "8",
    }
    for name, val in env.items():
        monkeypatch.setenv(name, val)
    loaded = load_settings(["--candidate-percent", "30", "--candidate-version", "v2"])
    assert (loaded.candidate_uri, loaded.candidate_sha256, loaded.candidate_format) == (
        "s3://models/iris/v2", sha, "onnx",
    )  # fmt: skip
    assert (loaded.candidate_mode, loaded.candidate_percent, loaded.candidate_version) == (
        "shadow", 30, "v2",
    )  # fmt: skip
    assert (loaded.sticky_header, loaded.shadow_queue) == ("X-User-Id", 8)
    candidate = loaded.candidate_settings("iris")
    assert (candidate.model_uri, candidate.model_sha256, candidate.model_format) == (
        "s3://models/iris/v2", sha, "onnx",
    )  # fmt: skip
    assert (candidate.model_version, candidate.model_name, candidate.candidate_uri) == (
        "v2", "iris", None,
    )  # fmt: skip
    # what the operator renders for "no candidate" (empty) and the defaults
    for name in ("CANDIDATE_URI", "CANDIDATE_SHA256", "CANDIDATE_FORMAT", "STICKY_HEADER"):
        monkeypatch.setenv(f"MODEL_SERVER_{name}", "")
    for name in ("CANDIDATE_MODE", "CANDIDATE_PERCENT", "SHADOW_QUEUE"):
        monkeypatch.delenv(f"MODEL_SERVER_{name}")
    plain = load_settings([])
    assert (plain.candidate_uri, plain.candidate_sha256, plain.sticky_header) == (None,) * 3
    assert (plain.candidate_mode, plain.candidate_percent, plain.candidate_version) == (
        "canary", 0, "candidate",
    )  # fmt: skip
    assert plain.shadow_queue == 64


def test_the_candidate_variables_the_operator_renders_are_server_settings() -> None:
    from mlmodel_operator import contract

    names = [getattr(contract, n) for n in dir(contract)
             if n.startswith(("ENV_CANDIDATE_", "ENV_STICKY"))]  # fmt: skip
    assert len(names) == 7
    fields = {f"MODEL_SERVER_{field.upper()}" for field in ServerSettings.model_fields}
    assert set(names) <= fields
    assert ServerSettings.model_fields["candidate_version"].default == contract.CANDIDATE_VERSION


# --- real processes: gRPC, several workers -----------------------------------------------------


@pytest.fixture(scope="module")
def canary_server(
    forest: Trained, logistic: Trained, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A real server process running a 10 % canary with a sticky header."""
    root = tmp_path_factory.mktemp("canary-server")
    env = server_env(
        forest.uri, forest.sha256, MODEL, root,
        MODEL_SERVER_CANDIDATE_URI=logistic.uri,
        MODEL_SERVER_CANDIDATE_SHA256=logistic.sha256,
        MODEL_SERVER_CANDIDATE_PERCENT="10",
        MODEL_SERVER_STICKY_HEADER=STICKY,
    )  # fmt: skip
    yield from serving(env, root / "server.log")


def grpc_request(rows: list[list[float]], version: str = "") -> Any:
    request = pb.ModelInferRequest(model_name=MODEL, model_version=version)
    tensor = request.inputs.add(name="x", datatype="FP64", shape=[len(rows), 4])
    tensor.contents.fp64_contents.extend(v for row in rows for v in row)
    return request


def grpc_infer(
    stub: Any, request: Any, metadata: tuple[tuple[str, str], ...] = ()
) -> tuple[str, Any]:
    """(the model-version initial metadata, the reply)."""
    reply, call = stub.ModelInfer.with_call(request, metadata=metadata)
    initial = dict(call.initial_metadata())
    assert initial["model-version"] == reply.model_version
    return str(initial["model-version"]), reply


def test_grpc_splits_exactly_reads_the_sticky_key_and_names_the_version(
    canary_server: Server,
) -> None:
    with grpc.insecure_channel(canary_server.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        answered = Counter(grpc_infer(stub, grpc_request(ROWS[:1]))[0] for _ in range(200))
        assert answered == {"1": 180, "candidate": 20}
        for user in (f"user-{i}" for i in range(60)):
            key = STICKY.lower()
            seen = {grpc_infer(stub, grpc_request(ROWS[:1]), ((key, user),))[0] for _ in range(3)}
            assert len(seen) == 1, (user, seen)
            expected = "candidate" if bucket(user) < 1000 else "1"
            assert seen == {expected}, user
        version, reply = grpc_infer(stub, grpc_request(ROWS[:2], "candidate"))
        assert version == "candidate" and reply.model_version == "candidate"
        ready = stub.ModelReady(pb.ModelReadyRequest(name=MODEL, version="candidate"))
        assert ready.ready
        meta = stub.ModelMetadata(pb.ModelMetadataRequest(name=MODEL))
        assert list(meta.versions) == ["1", "candidate"]
    with canary_server.client() as client:  # HTTP on the same process shares the split
        answer = client.post("/predict", json={"input": ROWS[0]}, headers={STICKY: "user-1"})
        assert answer.headers["model-version"] == ("candidate" if bucket("user-1") < 1000 else "1")
        found = scrape(client.get("/metrics").text)
    assert requests(found, "candidate", "candidate", "answer", "ok") >= 20 + 1


def test_grpc_requests_the_candidate_answered_are_compared_by_the_stable(
    canary_server: Server,
) -> None:
    """A canary's agreement copy of a gRPC request holds the message as received and parses it
    again for the stable (not the parsed message, which can be ~40 times bigger): every row
    the candidate answered is compared, and no copy fails."""
    compared = "model_server_candidate_compared_rows_total"
    with canary_server.client() as client:
        before = scrape(client.get("/metrics").text)
    with grpc.insecure_channel(canary_server.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        answered = Counter(grpc_infer(stub, grpc_request(ROWS[:2]))[0] for _ in range(50))
    assert answered["candidate"] >= 4
    with canary_server.client() as client:
        wait_for(
            "the copies to be compared",
            lambda: (
                value(scrape(client.get("/metrics").text), compared)
                >= value(before, compared) + 2 * answered["candidate"]
            ),
            lambda: client.get("/metrics").text[-2000:],
        )
        after = scrape(client.get("/metrics").text)

    def copies(found: Samples, outcome: str) -> float:
        return requests(found, "1", "stable", "copy", outcome)

    assert copies(after, "ok") - copies(before, "ok") == answered["candidate"]
    assert copies(after, "error") == copies(before, "error")


def bucket(value: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.blake2b(value.encode(), digest_size=8).digest(), "big") % 10_000


def test_with_several_workers_a_candidate_that_fails_to_load_is_reported_once_and_ready(
    forest: Trained, tmp_path: Path
) -> None:
    env = server_env(
        forest.uri, forest.sha256, MODEL, tmp_path,
        MODEL_SERVER_WORKERS="2",
        MODEL_SERVER_CANDIDATE_URI=str(tmp_path / "no-such-artifact"),
        MODEL_SERVER_CANDIDATE_PERCENT="50",
    )  # fmt: skip
    for server in serving(env, tmp_path / "server.log"):
        with server.client() as client:
            answer = client.get(f"/v2/models/{MODEL}/versions/candidate/ready")
            assert answer.status_code == 503
            assert "failed to load" in answer.json()["error"]
            versions = {client.post("/predict", json={"input": ROWS[0]}).headers["model-version"]
                        for _ in range(20)}  # fmt: skip
            assert versions == {"1"}
            found = scrape(client.get("/metrics").text)
        assert (
            value(found, "model_server_version_ready", version="candidate", role="candidate") == 0
        )
        assert value(found, "model_server_version_ready", version="1", role="stable") == 1
        assert server.output().count("candidate load failed") == 1


def test_with_several_workers_each_worker_serves_the_candidate_the_parent_fetched(
    forest: Trained, logistic: Trained, tmp_path: Path
) -> None:
    env = server_env(
        forest.uri, forest.sha256, MODEL, tmp_path,
        MODEL_SERVER_WORKERS="2",
        MODEL_SERVER_CANDIDATE_URI=logistic.uri,
        MODEL_SERVER_CANDIDATE_PERCENT="50",
    )  # fmt: skip
    for server in serving(env, tmp_path / "server.log"):
        with server.client() as client:
            for _ in range(10):  # each request may land on either worker
                answer = client.get(f"/v2/models/{MODEL}/versions/candidate/ready")
                assert answer.status_code == 200, answer.text
            versions = Counter(
                client.post("/predict", json={"input": ROWS[0]}).headers["model-version"]
                for _ in range(40)
            )
        assert set(versions) == {"1", "candidate"}, versions
        assert "candidate load failed" not in server.output()
