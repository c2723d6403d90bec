"""Small scenarios shared by the wireless tests (fast on 2 cores), as dataclasses, documents or TOML files,
and an in-process runner of the command line."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
from pathlib import Path

from beamattn.wireless.scenario import parse_scenario

# A minimal valid scenario document (8 antennas, 16 beams, 2 drops) that the loader fuzz tests perturb.
TINY_DOC = {
    "scenario": {"name": "fuzz", "drops": 2, "chunk_drops": 2},
    "channel": {"speed_kmh": 30, "duration": 0.2, "sample_interval": 0.002},
    "array": {"num_cols": 8},
    "codebook": {"oversampling": 2, "num_wide": 4},
    "measurement": {"set_b": 4, "history": 2},
    "selector": {"history": 2},
}


def tiny_doc(**overrides) -> dict:
    """The document of :func:`tiny_scenario`; each keyword updates one table (``channel={"speed_kmh": 30}``)."""
    data = {
        "scenario": {"name": "tiny", "seed": 3, "drops": 3, "chunk_drops": 2, "snr_db": 0.0, "outage_db": 0.0},
        "channel": {"backend": "geometric", "speed_kmh": 60, "duration": 0.3, "sample_interval": 0.002,
                    "min_distance": 15.0, "max_distance": 40.0, "num_clusters": 3, "rays_per_cluster": 2},
        "array": {"num_rows": 1, "num_cols": 8},
        "codebook": {"oversampling": 2, "num_wide": 4},
        "measurement": {"period": 0.02, "delay": 0.004, "snr_db": 10.0, "samples": 2, "set_b": 8, "history": 2,
                        "with_phase": True},
        "selector": {"history": 2, "d_model": 8, "neighbours": 2},
        "training": {"drops": 8, "steps": 40, "batch": 64, "lr": 0.01},
    }
    for table, values in overrides.items():
        data.setdefault(table, {}).update(copy.deepcopy(values))
    return data


def tiny_scenario(**overrides):
    """A 3-drop, 8-antenna, 2x oversampled (16 beams) geometric scenario; tables can be overridden."""
    return parse_scenario(tiny_doc(**overrides), source="tiny")


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, str)):
        return json.dumps(v)  # a JSON string is a TOML basic string
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("inf" if v > 0 else "-inf" if v < 0 else "nan")
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML for {type(v).__name__}")


def to_toml(doc: dict) -> str:
    """A scenario document (tables of scalars and lists; ``policy`` holds sub-tables) as TOML text."""
    lines = []
    for table, values in doc.items():
        subtables = {k: v for k, v in values.items() if isinstance(v, dict)}
        lines.append(f"[{table}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in values.items() if not isinstance(v, dict)]
        for name, sub in subtables.items():
            lines.append(f'[{table}."{name}"]')
            lines += [f"{k} = {_toml_value(v)}" for k, v in sub.items()]
    return "\n".join(lines) + "\n"


def write_scenario(path: str | Path, doc: dict | None = None, **overrides) -> str:
    """Write ``doc`` (default: :func:`tiny_doc` with ``overrides``) as a TOML file; returns its path."""
    path = Path(path)
    path.write_text(to_toml(doc if doc is not None else tiny_doc(**overrides)))
    return str(path)


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """``beamattn ARGV`` in this process: (exit code, stdout, stderr)."""
    from beamattn.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:  # argparse usage errors
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


def error_line(err: str) -> str:
    """The one ``beamattn CMD: error: ...`` line of a failed command's stderr (asserts there is exactly one, and
    no traceback; progress lines before it are allowed)."""
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ": error: " in ln]
    assert len(lines) == 1 and lines[0].startswith("beamattn "), err
    return lines[0]


@contextlib.contextmanager
def fresh_policy_registry():
    """Built-in policies only and no plugin loaded inside the block; everything a plugin registered, and the
    modules it imported, are gone after it (the registry is per process; tests must not leak policies)."""
    import sys

    import beamattn.plugins as plugins
    from beamattn.wireless.policies import POLICIES

    saved, loaded, done = dict(POLICIES), dict(plugins._LOADED), plugins._ENTRY_POINTS_DONE
    modules = set(sys.modules)
    plugins._LOADED.clear()
    plugins._ENTRY_POINTS_DONE = False
    try:
        yield
    finally:
        POLICIES.clear()
        POLICIES.update(saved)
        plugins._LOADED.clear()
        plugins._LOADED.update(loaded)
        plugins._ENTRY_POINTS_DONE = done
        for name in set(sys.modules) - modules:
            if name.startswith(("beamattn_plugin_", "my_policy", "fake_")):
                del sys.modules[name]
