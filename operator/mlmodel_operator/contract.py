"""The operator-server contract: env var names, ports, probe paths and mount points.

This is the one place in the operator that names them; the model server's settings
(package `model_server`, env prefix MODEL_SERVER_) read the same names, and the contract
test in tests/contract boots the real server from a rendered Deployment's env.
"""

from __future__ import annotations

from typing import Final

ENV_PREFIX: Final = "MODEL_SERVER_"
ENV_MODEL_URI: Final = "MODEL_SERVER_MODEL_URI"
ENV_MODEL_NAME: Final = "MODEL_SERVER_MODEL_NAME"
ENV_MODEL_SHA256: Final = "MODEL_SERVER_MODEL_SHA256"
ENV_MODEL_FORMAT: Final = "MODEL_SERVER_MODEL_FORMAT"
ENV_HOST: Final = "MODEL_SERVER_HOST"
ENV_PORT: Final = "MODEL_SERVER_PORT"
ENV_GRPC_PORT: Final = "MODEL_SERVER_GRPC_PORT"
ENV_WORKERS: Final = "MODEL_SERVER_WORKERS"
ENV_LOG_LEVEL: Final = "MODEL_SERVER_LOG_LEVEL"
ENV_DRIFT_WINDOW: Final = "MODEL_SERVER_DRIFT_WINDOW"
# The candidate version (issue 17, docs/rollouts.md): rendered only while a candidate is served.
ENV_CANDIDATE_URI: Final = "MODEL_SERVER_CANDIDATE_URI"
ENV_CANDIDATE_SHA256: Final = "MODEL_SERVER_CANDIDATE_SHA256"
ENV_CANDIDATE_FORMAT: Final = "MODEL_SERVER_CANDIDATE_FORMAT"
ENV_CANDIDATE_VERSION: Final = "MODEL_SERVER_CANDIDATE_VERSION"
ENV_CANDIDATE_MODE: Final = "MODEL_SERVER_CANDIDATE_MODE"
ENV_CANDIDATE_PERCENT: Final = "MODEL_SERVER_CANDIDATE_PERCENT"
ENV_STICKY_HEADER: Final = "MODEL_SERVER_STICKY_HEADER"
# The version strings the pods report (Model-Version header, metrics' `version` label): the
# stable keeps the server's default, the candidate gets this one.
STABLE_VERSION: Final = "1"
CANDIDATE_VERSION: Final = "candidate"

# Inside the pod the server listens on every interface of the pod's own network namespace.
POD_LISTEN_HOST: Final = "0.0.0.0"
DEFAULT_PORT: Final = 8080
# The Open Inference Protocol V2 gRPC service (inference.GRPCInferenceService); "0" turns it off.
DEFAULT_GRPC_PORT: Final = 8081
GRPC_OFF: Final = "0"
LIVENESS_PATH: Final = "/v2/health/live"
READINESS_PATH: Final = "/v2/health/ready"

# Read-only root filesystem: downloads go to an emptyDir at /tmp; pvc:// claims mount here.
SCRATCH_DIR: Final = "/tmp"
PVC_MOUNT_PATH: Final = "/mnt/models"
# A pvc:// candidate on another claim than the stable's is mounted here.
CANDIDATE_PVC_MOUNT_PATH: Final = "/mnt/candidate"
