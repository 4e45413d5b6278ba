"""mlmodel_artifact."""
