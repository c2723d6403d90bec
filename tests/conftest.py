"""Shared pytest configuration."""

import os

try:
    from hypothesis import settings
except ImportError:  # the Keras suite's environment (.venv-tf) has no hypothesis
    settings = None

if settings is not None:
    # Under CI (CI=true) the property-based tests draw the same examples on every run, so a red CI is a
    # reproducible failure of the code, never an unlucky draw; local runs keep exploring new examples.
    settings.register_profile("ci", derandomize=True, database=None)
    if os.environ.get("CI"):
        settings.load_profile("ci")
