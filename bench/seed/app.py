"""The seed guide's Flask app, as its readers would write it (plus the batch form).

Run with `flask --app app run` or `gunicorn -w 2 app:app`. SEED_MODEL_PATH names the joblib file;
SEED_MODEL_SHA256 is its expected digest, checked before the pickle is loaded.
"""

import hashlib
import os

import joblib
import numpy as np
from flask import Flask, jsonify, request


def load_model(path, sha256):
    """joblib.load, but only a file whose digest is the one we expect (a pickle runs code)."""
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    if digest != sha256:
        raise RuntimeError(f"{path}: sha256 {digest} is not the expected {sha256}")
    return joblib.load(path)


model = load_model(os.environ["SEED_MODEL_PATH"], os.environ["SEED_MODEL_SHA256"])
app = Flask(__name__)


@app.route("/predict", methods=["POST"])
def predict():
    data = request.get_json()
    if "inputs" in data:
        predictions = model.predict(np.array(data["inputs"]))
        return jsonify({"predictions": [int(p) for p in predictions]})
    prediction = model.predict(np.array([data["input"]]))
    return jsonify({"prediction": int(prediction[0])})
