"""A minimal KServe sklearn model, the way KServe's docs write a custom Python model.

Run with the kserve venv's interpreter and KServe's own flags (it parses sys.argv on import):
`python kserve_model.py --model_name iris --http_port N --workers W --enable_grpc false`.
BENCH_MODEL_PATH names the joblib file, BENCH_MODEL_SHA256 its expected digest.
"""

import hashlib
import os

import joblib
import kserve
import numpy as np
import uvicorn


class LoopbackConfig(uvicorn.Config):
    """KServe 0.21 hard-codes host 0.0.0.0; the benchmark binds loopback only."""

    def __init__(self, *args, **kwargs):
        kwargs["host"] = "127.0.0.1"
        super().__init__(*args, **kwargs)


class SKLearnModel(kserve.Model):
    """Load a digest-checked joblib file; predict V1 `instances`."""

    def __init__(self, name, path, sha256):
        super().__init__(name)
        self.path, self.sha256 = path, sha256
        self.model = None

    def load(self):
        with open(self.path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        if digest != self.sha256:
            raise RuntimeError(f"{self.path}: sha256 {digest} is not the expected {self.sha256}")
        self.model = joblib.load(self.path)
        self.ready = True
        return self.ready

    def predict(self, payload, headers=None):
        instances = payload["instances"]
        if instances and isinstance(instances[0], dict):
            # A pipeline fitted on named columns (the penguins ColumnTransformer) takes a frame.
            import pandas as pd

            x = pd.DataFrame(instances).fillna(np.nan)
        else:
            x = np.asarray(instances)
        return {"predictions": self.model.predict(x).tolist()}


if __name__ == "__main__":
    uvicorn.Config = LoopbackConfig
    name = os.environ.get("BENCH_MODEL_NAME", "iris")
    model = SKLearnModel(name, os.environ["BENCH_MODEL_PATH"], os.environ["BENCH_MODEL_SHA256"])
    model.load()
    kserve.ModelServer().start([model])
