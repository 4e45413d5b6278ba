"""mlmodel_trainer."""
