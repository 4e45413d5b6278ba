"""Estimator parameters as they are stored in the model card (JSON)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np


def json_safe_params(params: dict[str, Any]) -> dict[str, Any]:
    """Estimator parameters with NumPy scalars unwrapped and anything not JSON-able as its repr."""
    safe: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, np.generic):
            value = value.item()
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            value = repr(value)
        safe[key] = value
    return safe
