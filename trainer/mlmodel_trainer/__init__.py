"""Train, evaluate and package scikit-learn models as mlmodel artifacts (`mlmodel-train`)."""

from mlmodel_trainer.errors import TrainerError
from mlmodel_trainer.train import TrainConfig, TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "TrainerError", "train"]
