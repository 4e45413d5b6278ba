"""The drift loop checks every MLModel, and one model's failure does not stop the others."""

from __future__ import annotations

from typing import Any

from mlmodel_operator.driftloop import check_once
from mlmodel_operator.reconcile import Change, Outcome


class FakeKube:
    def __init__(self, models: list[tuple[str, str]]) -> None:
        self.models = models
        self.listed: list[tuple[str, ...]] = []

    def list_mlmodels(self, namespaces: tuple[str, ...] = ()) -> list[tuple[str, str]]:
        self.listed.append(namespaces)
        return self.models

    def read_mlmodel(self, namespace: str, name: str) -> dict[str, Any]:
        return {"metadata": {"namespace": namespace, "name": name}}


class FakeReconciler:
    def __init__(self, kube: FakeKube, failing: str) -> None:
        self.kube = kube
        self.failing = failing
        self.seen: list[str] = []

    def reconcile_owner(self, namespace: str, name: str) -> Outcome:
        self.seen.append(name)
        if name == self.failing:
            raise RuntimeError("API server unavailable")
        return Outcome({}, (Change("Created", "Service", name),))


def test_every_model_is_checked_even_when_one_fails() -> None:
    kube = FakeKube([("a", "one"), ("a", "two"), ("b", "three")])
    reconciler = FakeReconciler(kube, failing="two")
    posted: list[str] = []
    checked = check_once(
        reconciler,
        ("a", "b"),
        lambda body, _: posted.append(  # type: ignore[arg-type]
            body["metadata"]["name"]
        ),
    )
    assert reconciler.seen == ["one", "two", "three"]
    assert checked == 2
    assert posted == ["one", "three"]
    assert kube.listed == [("a", "b")]
