"""A real Prometheus for the e2e tests: upstream, built by `make e2e-deps` (Debian's has no
Kubernetes SD), run on 127.0.0.1 with the shipped prometheus.yml pointed at devcluster."""

from __future__ import annotations

import subprocess
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from devcluster.stack import mlstack

from .e2e_testlib import free_port

MONITORING = Path(__file__).resolve().parents[2] / "operator" / "deploy" / "monitoring"


def prometheus_binary() -> str:
    """Upstream Prometheus built by `make e2e-deps` (Debian's has no Kubernetes SD); required."""
    from devcluster.stack import prometheus as build

    path = build.binary()
    assert path.exists(), f"Prometheus is not built ({path}): run `make e2e-deps`"
    return str(path)


def scrape_config(kubeconfig: Path, namespace: str) -> dict[str, Any]:
    """The shipped prometheus.yml, pointed at this cluster from the host, 1 s scrapes; its rule
    files (relative to the shipped file) by absolute path, since this copy is written elsewhere."""
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s")
    config["rule_files"] = [str(MONITORING / name) for name in config.get("rule_files", [])]
    (job,) = config["scrape_configs"]
    job.update(scrape_interval="1s", scrape_timeout="1s")
    for sd in job["kubernetes_sd_configs"]:
        sd["kubeconfig_file"] = str(kubeconfig)
        sd["namespaces"] = {"names": [namespace]}
    return dict(config)


@contextmanager
def prometheus(
    config: dict[str, Any], workdir: Path, host: str = "127.0.0.1", port: int | None = None
) -> Iterator[str]:
    """A real Prometheus on `host` (loopback, or the node's address for pods to reach it);
    yields its base URL."""
    port = port or free_port()
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = (workdir / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            prometheus_binary(),
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address={host}:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://{host}:{port}"
    try:

        def ready() -> bool:
            assert proc.poll() is None, (workdir / "prometheus.log").read_text()[-2000:]
            try:
                return mlstack.http("GET", f"{url}/-/ready")[0] == 200
            except OSError:
                return False

        mlstack.wait_for("Prometheus to be ready", ready, 60, interval=0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def query(url: str, promql: str) -> list[dict[str, Any]]:
    """An instant PromQL query's result vector."""
    status, body = mlstack.http("GET", f"{url}/api/v1/query?query={urllib.parse.quote(promql)}")
    assert status == 200, body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def alerts(url: str) -> list[dict[str, Any]]:
    """Every active alert (pending or firing): labels, annotations, state, value."""
    status, body = mlstack.http("GET", f"{url}/api/v1/alerts")
    assert status == 200, body
    found: list[dict[str, Any]] = body["data"]["alerts"]
    return found
