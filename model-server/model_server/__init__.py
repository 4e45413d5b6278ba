"""model_server."""
