"""e2e fixtures: the project's whole stack on devcluster's real node.

Package scope: every e2e module shares one node cluster and one stack, installed once (about a
minute and a half: most of it loading the images into the node) and stopped after the last e2e
test, before the node tier starts its own cluster (only one can run on a machine). The stack:
the images (server and operator built by `make images`; the artifact store image is built here
and cached) loaded into the node, the CRD and the operator from operator/deploy, an in-cluster
S3 store and four artifacts in it (v1, a retrained v2, a corrupt copy of v1, and the penguins
pipeline with its mixed-type features). Each test gets its own namespace that enforces the
restricted Pod Security Standard, so what one module leaves behind is not another's: nothing
here lists across namespaces, and a module that kills the operator's leader (test_e2e_leader)
leaves the operator as a user's would be after such a fault, which the later modules then use.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from devcluster.pytest_plugin import started_node_cluster
from devcluster.stack import mlstack
from devcluster.stack.mlstack import Kube

from .e2e_testlib import SECRET, Artifact, Stack, publish, unique

STORE_NAMESPACE = "e2e-artifacts"


def _corrupt_copy(v1: Artifact, prefix: str) -> Artifact:
    """v1's model card with a truncated model file: the pinned digest no longer matches."""
    import boto3

    s3 = boto3.client("s3")
    src = v1.uri.removeprefix(f"s3://{mlstack.BUCKET}/")
    card = s3.get_object(Bucket=mlstack.BUCKET, Key=f"{src}/model-card.json")["Body"].read()
    model = s3.get_object(Bucket=mlstack.BUCKET, Key=f"{src}/model.skops")["Body"].read()
    s3.put_object(Bucket=mlstack.BUCKET, Key=f"{prefix}/model-card.json", Body=card)
    s3.put_object(Bucket=mlstack.BUCKET, Key=f"{prefix}/model.skops", Body=model[: len(model) // 2])
    return Artifact(f"s3://{mlstack.BUCKET}/{prefix}", v1.sha256, v1.rows, v1.expected)


@pytest.fixture(scope="package")
def node_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """devcluster's `node_cluster`, shared by the e2e modules (see above)."""
    with started_node_cluster(request, tmp_path_factory) as handle:
        yield handle


@pytest.fixture(scope="package")
def stack(node_cluster: Any) -> Iterator[Stack]:
    """Images loaded, CRD + operator installed, the artifact store running with artifacts."""
    kube = Kube(node_cluster.kubeconfig)
    mlstack.build_images(["artifact-store"])  # cached after the first build
    mlstack.load_images(
        node_cluster.state_dir,
        [
            mlstack.SERVER_IMAGE,
            mlstack.SERVER_SLIM_IMAGE,
            mlstack.OPERATOR_IMAGE,
            mlstack.STORE_IMAGE,
        ],
        load=node_cluster.load_image,
    )
    mlstack.install_crd(kube)
    mlstack.install_operator(kube)
    kube.apply([mlstack.namespace_manifest(STORE_NAMESPACE)])
    store = mlstack.deploy_store(kube, STORE_NAMESPACE)
    mlstack.create_bucket(store)
    with pytest.MonkeyPatch.context() as env:
        for key in mlstack.PROXY_VARS:
            env.delenv(key, raising=False)
        for key, value in mlstack.store_env(store).items():
            env.setenv(key, value)
        v1 = publish("e2e/iris/v1")
        v2 = publish("e2e/iris/v2", estimator="logistic_regression", params={"max_iter": 500})
        corrupt = _corrupt_copy(v1, "e2e/iris/corrupt")
        penguins = publish("e2e/penguins/v1", dataset="penguins", params={"n_estimators": 20})
    assert v1.sha256 != v2.sha256
    yield Stack(kube=kube, store=store, v1=v1, v2=v2, corrupt=corrupt, penguins=penguins)
    kube.run("delete", "namespace", STORE_NAMESPACE, "--wait=false", check=False)


@pytest.fixture
def model_ns(stack: Stack) -> Iterator[str]:
    """A fresh namespace enforcing Pod Security `restricted`, holding the store credentials."""
    name = unique("e2e")
    stack.kube.apply(
        [
            mlstack.namespace_manifest(name),
            mlstack.credentials_secret(name, SECRET, stack.store),
        ]
    )
    yield name
    if os.environ.get("E2E_KEEP_NAMESPACES") != "1":
        stack.kube.run("delete", "namespace", name, "--wait=false", check=False)
