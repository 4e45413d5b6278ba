"""Build hook: Python stubs for the gRPC protocol, generated from its .proto by grpcio-tools.

Runs for every build of the package (the wheel the server image installs, and the editable
install `uv sync` makes), so the stubs always match the .proto and are never checked in.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

PROTOS = ("model_server/grpc_v2/grpc_predict_v2.proto",)


class ProtoStubs(BuildHookInterface):  # type: ignore[type-arg]
    """Run protoc (python, pyi and grpc outputs) next to each .proto before building."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        from grpc_tools import protoc

        root = Path(self.root)
        well_known = str(files("grpc_tools") / "_proto")
        for proto in PROTOS:
            args = [
                "grpc_tools.protoc",
                f"--proto_path={root}",
                f"--proto_path={well_known}",
                f"--python_out={root}",
                f"--pyi_out={root}",
                f"--grpc_python_out={root}",
                str(root / proto),
            ]
            if protoc.main(args) != 0:
                raise RuntimeError(f"protoc failed on {proto}")
