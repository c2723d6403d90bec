"""beamattn: attention for wireless beam selection, on one shared attention core."""

__version__ = "0.1.0"
