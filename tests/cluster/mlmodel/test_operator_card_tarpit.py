"""Tarpit model cards do not stop the operator: while many MLModels point at a server that
trickles one byte every 2 s (four times as many as the operator has reconcile workers and card
threads), other MLModels still get their card read (status.modelDigest from their card) and
become Ready; the tarpits' status says only that their card could not be read. (When a reconcile
waited for its card read, that many tarpits kept every reconcile worker waiting.) A model whose
source is not listed is tracked through spec.model.sha256 only, and status says so without
calling it degraded."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from mlmodel_harness import Api, OperatorProcess, card_server, dump, wait_until

# the operator's pods turn Ready on kwok's fake nodes, without images or a reachable artifact
pytestmark = [pytest.mark.cluster, pytest.mark.fake_pods]

# 4 reconcile workers (MLOP_WORKERS) and 4 card threads (MLOP_CARD_READERS), 5 s deadline
TARPITS = 16
GOOD = 3


def card(sha: str) -> dict[str, Any]:
    """A valid model card (what mlmodel-train writes) naming `sha`."""
    return {
        "name": "iris",
        "task": "classification",
        "estimator": "DecisionTreeClassifier",
        "params": {},
        "feature_names": ["a", "b", "c", "d"],
        "class_labels": [0, 1, 2],
        "metrics": {"accuracy": 1.0},
        "training": {
            "dataset": "iris",
            "test_size": 0.2,
            "seed": 0,
            "n_train": 120,
            "n_test": 30,
            "data_fingerprint": "0" * 64,
        },
        "sample": {"inputs": [[5.1, 3.5, 1.4, 0.2]], "outputs": [0]},
        "format": "skops",
        "sha256": sha,
        "files": {"skops": {"file": "model.skops", "sha256": sha, "size": 1}},
        "library_versions": {},
        "created_at": "2026-01-01T00:00:00Z",
    }


def apply_model(api: Api, name: str, uri: str) -> None:
    api.apply(
        json.dumps(
            {
                "apiVersion": "mlops.dev/v1alpha1",
                "kind": "MLModel",
                "metadata": {"name": name},
                "spec": {"model": {"uri": uri}, "replicas": 1},
            }
        )
    )


def tracked(api: Api, name: str, sha: str) -> bool:
    """Ready, serving the card's digest, and not degraded."""
    body = api.ready_body(name)
    if body is None or body["status"].get("modelDigest") != sha:
        return False
    return bool(api.condition(name, "Degraded").get("status") == "False")


def test_other_models_are_read_and_become_ready_while_tarpits_hold_card_reads(
    api: Api, operator: OperatorProcess
) -> None:
    server = card_server()
    run = uuid.uuid4().hex[:8]
    for index in range(TARPITS):
        apply_model(api, f"tarpit-{index}", f"{server.base}/tarpit/{run}/{index}")
    wait_until("the tarpits are being read", lambda: server.tarpits_open >= 4)

    reads_before = server.tarpit_reads
    shas = {f"good-{i}": f"{i + 1:x}" * 64 for i in range(GOOD)}
    for name, sha in shas.items():
        directory = server.root / run / name
        directory.mkdir(parents=True)
        (directory / "model-card.json").write_text(json.dumps(card(sha)))
        apply_model(api, name, f"{server.base}/{run}/{name}")
    for name, sha in shas.items():
        wait_until(
            f"{name} Ready with its card's digest while tarpits are active",
            lambda n=name, s=sha: tracked(api, n, s),
            timeout=90,
        )
    # the tarpits kept being read (and held threads for a deadline each) meanwhile
    assert server.tarpit_reads > reads_before, "no tarpit was read while the others converged"
    # reconciles did not wait for the reads: each read's end queued its MLModel again
    assert operator.metric("mlmodel_operator_reconcile_total", trigger="card") > 0

    for index in range(TARPITS):
        degraded = wait_until(
            f"tarpit-{index} Degraded",
            lambda i=index: (
                (c := api.condition(f"tarpit-{i}", "Degraded")) and c["status"] == "True" and c
            ),
            timeout=60,
        )
        assert degraded["reason"] in ("ArtifactUnreachable", "ArtifactReadBusy"), dump(degraded)
        assert "deadline" not in degraded["message"] and "HTTP" not in degraded["message"]
        # the card is the only trouble: the pods (which fetch the artifact themselves) are Ready
        wait_until(
            f"tarpit-{index} Ready all the same",
            lambda i=index: api.condition(f"tarpit-{i}", "Ready").get("status") == "True",
            timeout=60,
        )
    assert "Traceback" not in operator.log_tail(200)


def test_a_model_from_an_unlisted_source_is_tracked_by_its_pin_only_and_says_so(
    api: Api, operator: OperatorProcess
) -> None:
    apply_model(api, "elsewhere", "http://127.0.0.1:9/models/iris")
    note = wait_until(
        "Degraded=False naming the unlisted source",
        lambda: (
            (c := api.condition("elsewhere", "Degraded"))
            and c["reason"] == "ArtifactSourceNotAllowed"
            and c
        ),
    )
    assert note["status"] == "False"
    assert "tracked only through spec.model.sha256" in note["message"]
    wait_until("Ready all the same", lambda: api.is_ready("elsewhere"))
