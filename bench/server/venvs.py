"""Each peer server in its own pinned venv, built with uv and cached outside the checkout."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

CACHE = Path.home() / ".cache" / "mlmodel-operator" / "bench-venvs"

# Peers run the very model file our server loads, so they get the workspace's scikit-learn,
# numpy and joblib: the pickle loads without version warnings and predict costs the same.
_SHARED = ("scikit-learn", "numpy", "scipy", "joblib")


@dataclass(frozen=True)
class VenvSpec:
    """A named, versioned set of pinned requirements."""

    name: str
    version: str
    requirements: tuple[str, ...]

    def path(self) -> Path:
        """Where the venv lives; the key changes whenever a pin does."""
        sklearn = metadata.version("scikit-learn")
        return CACHE / f"{self.name}-{self.version}-sklearn{sklearn}"

    def python(self) -> Path:
        """The venv's interpreter."""
        return self.path() / "bin" / "python"


SEED = VenvSpec("seed-flask", "3.1.3", ("flask==3.1.3", "gunicorn==27.0.1"))
MLSERVER = VenvSpec(
    "mlserver",
    "1.7.1",
    # uvloop 0.22+ breaks MLServer's parallel inference workers ("There is no current event loop").
    ("mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop==0.21.0"),
)
KSERVE = VenvSpec("kserve", "0.21.0", ("kserve==0.21.0",))


def shared_pins() -> tuple[str, ...]:
    """The workspace's own versions of the libraries that load and run the model."""
    return tuple(f"{name}=={metadata.version(name)}" for name in _SHARED)


def ensure(spec: VenvSpec) -> Path:
    """Create the venv unless a complete one is cached; return its interpreter."""
    root = spec.path()
    marker = root / ".complete"
    if marker.exists():
        return spec.python()
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "VIRTUAL_ENV": str(root)}
    env.pop("UV_PROJECT_ENVIRONMENT", None)
    print(f"[bench] creating venv {root.name} ...", flush=True)
    _uv(["venv", "--quiet", "--clear", "--python", "3.11", str(root)], env)
    _uv(["pip", "install", "--quiet", *spec.requirements, *shared_pins()], env)
    marker.write_text("\n".join(spec.requirements + shared_pins()) + "\n")
    return spec.python()


def _uv(args: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(["uv", *args], env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"uv {' '.join(args[:2])} failed for {env['VIRTUAL_ENV']}:\n{result.stderr.strip()}"
        )
