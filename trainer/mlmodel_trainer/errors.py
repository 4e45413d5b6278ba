"""The one error type the trainer raises for mistakes a user can fix."""


class TrainerError(Exception):
    """A user error (bad data, unknown estimator or parameter): one line, no traceback."""
