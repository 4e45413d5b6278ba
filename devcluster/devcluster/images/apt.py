"""Install Debian packages the image tooling needs, only when they are missing."""

from __future__ import annotations

import os
import subprocess


def missing_packages(packages: tuple[str, ...]) -> list[str]:
    """The subset of `packages` that dpkg does not report as installed."""
    missing = []
    for name in packages:
        result = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", name],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0 or "install ok installed" not in result.stdout:
            missing.append(name)
    return missing


def ensure_packages(packages: tuple[str, ...]) -> None:
    """`apt-get install` whichever of `packages` is missing (needs root, as on CI)."""
    missing = missing_packages(packages)
    if not missing:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"images: installing Debian packages {' '.join(missing)}", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
        check=True,
        env=env,
    )
