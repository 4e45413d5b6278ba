"""pytest plugin: the session-scoped `cluster` fixture (filled in by the devcluster work)."""
