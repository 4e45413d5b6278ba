"""mlmodel_operator."""
