"""The HTTP floor: a FastAPI endpoint that returns a constant, served like the model server."""

from fastapi import FastAPI

app = FastAPI()


@app.post("/predict")
async def predict() -> dict[str, int]:
    """Answer like the seed API without reading the body or running a model."""
    return {"prediction": 0}
