"""The server container's resources: the operator's defaults, overridden key by key by the spec.

Every model pod gets requests (the scheduler's and the HPA's basis) and limits (memory and
ephemeral storage: a bad request or a huge download costs the pod, not the node) even when its
MLModel names none. A request or limit the user sets in spec.server.resources wins; the keys the
user leaves out keep the operator's defaults (MLOP_DEFAULT_*). A default never contradicts the
user's own value: a default request above the user's limit is lowered to that limit, a default
limit below the user's request is raised to that request (the API server would refuse the
Deployment otherwise). When the user sets both and the request exceeds the limit, the API
server refuses the Deployment and status says so.
"""

from __future__ import annotations

from typing import Final

from mlmodel_operator.resource import MLModel, Quantity
from mlmodel_operator.settings import OperatorSettings, exceeds

EPHEMERAL_STORAGE: Final = "ephemeral-storage"
Amounts = dict[str, Quantity]


def default_resources(settings: OperatorSettings) -> dict[str, Amounts]:
    """The operator's defaults as requests and limits; an empty setting renders nothing."""
    requests = {
        "cpu": settings.default_cpu_request,
        "memory": settings.default_memory_request,
        EPHEMERAL_STORAGE: settings.default_ephemeral_storage_request,
    }
    limits = {
        "cpu": settings.default_cpu_limit,
        "memory": settings.default_memory_limit,
        EPHEMERAL_STORAGE: settings.default_ephemeral_storage_limit,
    }
    return {
        "limits": {name: value for name, value in limits.items() if value},
        "requests": {name: value for name, value in requests.items() if value},
    }


def container_resources(mlmodel: MLModel, settings: OperatorSettings) -> dict[str, Amounts]:
    """requests and limits for the server container: the user's keys over the defaults."""
    defaults = default_resources(settings)
    user = mlmodel.spec.server.resources
    user_requests = dict(user.requests or {}) if user else {}
    user_limits = dict(user.limits or {}) if user else {}
    requests = {**defaults["requests"], **user_requests}
    limits = {**defaults["limits"], **user_limits}
    for name in requests.keys() & limits.keys():
        if not exceeds(requests[name], limits[name]):
            continue
        if name in user_limits and name not in user_requests:
            requests[name] = limits[name]
        elif name in user_requests and name not in user_limits:
            limits[name] = requests[name]
    result = {"limits": dict(sorted(limits.items())), "requests": dict(sorted(requests.items()))}
    return {key: amounts for key, amounts in result.items() if amounts}


def scratch_size_limit(resources: dict[str, Amounts]) -> Quantity | None:
    """The /tmp emptyDir's sizeLimit: the container's ephemeral-storage limit, if any.

    Downloads are most of what the pod writes, so the scratch volume may fill the whole
    budget; the kubelet evicts the pod when either is exceeded, before the node's disk fills.
    """
    return resources.get("limits", {}).get(EPHEMERAL_STORAGE)
