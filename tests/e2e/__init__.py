"""e2e tests: a package, so that its modules share one node cluster and stack (conftest.py)."""
