"""beamattn: attention for wireless beam selection, on one shared attention core."""

__version__ = "0.1.0"

# The researcher's API (beamattn.api), imported on first use so that `import beamattn` (and the CLI's
# start) stays free of torch: beamattn.load_scenario, beamattn.episodes, beamattn.evaluate, ...
_API = ("load_scenario", "with_drops", "episodes", "Chunk", "evaluate", "load_plugins", "make_policies", "make_policy",
        "decision_metrics", "register", "Policy", "Decision", "Episode", "Scenario", "RunResult")


def __getattr__(name: str):
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'beamattn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
