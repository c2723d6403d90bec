"""Policies from the user's own modules: ``--plugin MODULE`` and the ``beamattn.policies`` entry points.

A plugin is a Python module that registers policies when it is imported::

    from beamattn.wireless.policies import Policy, register

    @register("my-policy")
    class MyPolicy(Policy):
        def decide(self, ep):
            ...

Two ways to bring one in:

- ``--plugin SPEC`` on ``beamattn run``, ``sweep``, ``linklevel`` and ``train`` (repeatable), or
  :func:`load_plugins` from Python. ``SPEC`` is a module name importable from ``sys.path``
  (``my_pkg.policies``; an installed package, or one on ``$PYTHONPATH``) or the path of a ``.py`` file.
- An installed distribution that declares an entry point in the group ``beamattn.policies``
  (``pyproject.toml``: ``[project.entry-points."beamattn.policies"] my-policies = "my_pkg.policies"``).
  Entry points are loaded lazily: only when a policy name is not among those registered
  (:func:`find_policy`, called by the scenario loader and :func:`~beamattn.wireless.policies.make_policy`),
  so ``import beamattn`` and runs of built-in policies import no third-party code.

Errors are one line naming the plugin: a module that cannot be found or raises on import (with the
exception), a ``.py`` path that does not exist, and a policy name that is already registered (a built-in
or another plugin's) — refused by name, never silently replaced. A plugin is imported once per process
(loading it again is a no-op), so the Dask workers of a sweep load it before each task at no cost
(:func:`beamattn.wireless.sweep.run_sweep`).

Records: :func:`loaded_plugins` lists what was loaded (the spec, the module name, its file and the file's
SHA-256, the policies it registered, and how it came: ``--plugin`` or an entry point); ``beamattn run`` and
``linklevel`` write it into their JSON results (``plugins``), ``sweep`` into ``sweep.json``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

__all__ = ["ENTRY_POINT_GROUP", "PluginInfo", "load_plugin", "load_plugins", "loaded_plugins", "find_policy",
           "load_entry_points", "plugin_specs"]

ENTRY_POINT_GROUP = "beamattn.policies"


@dataclass(frozen=True)
class PluginInfo:
    """One loaded plugin, for the records."""

    spec: str  # what was asked for: a module name, an absolute .py path, or "entry-point:NAME"
    module: str  # the module's name in sys.modules
    file: str | None  # its source file
    sha256: str | None  # of that file (None when the module has no file)
    policies: tuple[str, ...]  # the names it registered
    source: str  # "--plugin" or "entry point"

    def to_dict(self) -> dict:
        return {**asdict(self), "policies": list(self.policies)}


_LOADED: dict[str, PluginInfo] = {}  # spec (resolved) -> record, in load order
_ENTRY_POINTS_DONE = False


def _file_sha256(path: str | None) -> str | None:
    if not path or not Path(path).is_file():
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _is_path(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or "\\" in spec


def _import(spec: str, label: str):
    """Import ``spec`` (module name or .py path) and return (module, policies it registered)."""
    from .wireless.policies import POLICIES  # the built-ins first: a plugin reusing their names is refused

    before = set(POLICIES)
    try:
        if _is_path(spec):
            path = Path(spec)
            if path.suffix != ".py" or not path.is_file():
                raise ValueError(f"{label} {spec!r}: file not found; expected a module name or the path of a .py file")
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
            name = f"beamattn_plugin_{path.stem}_{digest}"  # one module per file version, picklable by name
            if name in sys.modules:
                return sys.modules[name], ()
            module_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            try:
                module_spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[name]
                raise
        else:
            module = importlib.import_module(spec)
    except (Exception, SystemExit) as e:  # whatever the user's module raises: one line, with the exception
        for name in set(POLICIES) - before:  # a half-imported plugin leaves no policy behind
            del POLICIES[name]
        if isinstance(e, ValueError) and str(e).startswith(label):
            raise
        what = "" if isinstance(e, ValueError) and "already registered" in str(e) else "import failed: "
        raise ValueError(f"{label} {spec!r}: {what}{type(e).__name__}: {str(e).strip()}".replace("\n", " ")) from None
    return module, _registered_by(module, before)


def _registered_by(module, before: set[str]) -> tuple[str, ...]:
    """The policy names that ``module`` registered: new since ``before``, or defined in the module (when it
    was imported earlier, e.g. by the user's own code)."""
    from .wireless.policies import POLICIES

    own = {n for n, cls in POLICIES.items() if getattr(cls, "__module__", None) == getattr(module, "__name__", "")}
    return tuple(sorted((set(POLICIES) - before) | own))


def load_plugin(spec: str, *, source: str = "--plugin") -> PluginInfo:
    """Import one plugin (a module name importable from ``sys.path`` or a ``.py`` path); idempotent.

    Raises one ``ValueError`` line naming the plugin when it cannot be imported or registers a policy name
    that exists already.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"--plugin = {spec!r}; expected a module name or the path of a .py file")
    spec = spec.strip()
    key = str(Path(spec).resolve()) if _is_path(spec) else spec
    if key in _LOADED:
        return _LOADED[key]
    module, policies = _import(key, "plugin")
    if not policies:  # a misspelt or wrong module (e.g. a package of the same name) is not silently accepted
        raise ValueError(f"plugin {key!r}: module {module.__name__!r} registered no policy; expected a module that "
                         "registers policies with beamattn.wireless.policies.register")
    file = getattr(module, "__file__", None)
    info = PluginInfo(spec=key, module=module.__name__, file=file, sha256=_file_sha256(file), policies=policies,
                      source=source)
    _LOADED[key] = info
    return info


def load_plugins(specs: Iterable[str] = ()) -> list[PluginInfo]:
    """Load every plugin of ``specs`` in order (see :func:`load_plugin`)."""
    return [load_plugin(s) for s in specs]


def load_entry_points() -> list[PluginInfo]:
    """Load the ``beamattn.policies`` entry points of the installed distributions (once per process)."""
    global _ENTRY_POINTS_DONE
    if _ENTRY_POINTS_DONE:
        return [p for p in _LOADED.values() if p.source == "entry point"]
    _ENTRY_POINTS_DONE = True  # set first: a failing entry point is reported once, not on every lookup
    out = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        key = f"entry-point:{ep.name}"
        if key in _LOADED:
            continue
        from .wireless.policies import POLICIES

        before = set(POLICIES)
        try:
            module = ep.load()
        except (Exception, SystemExit) as e:  # one line naming the entry point and its distribution's module
            for name in set(POLICIES) - before:
                del POLICIES[name]
            what = "" if isinstance(e, ValueError) and "already registered" in str(e) else "import failed: "
            raise ValueError(f"entry point {ep.name!r} ({ep.value}) of group {ENTRY_POINT_GROUP!r}: {what}"
                             f"{type(e).__name__}: {str(e).strip()}".replace("\n", " ")) from None
        file = getattr(module, "__file__", None)
        info = PluginInfo(spec=key, module=getattr(module, "__name__", ep.value), file=file,
                          sha256=_file_sha256(file), policies=_registered_by(module, before), source="entry point")
        _LOADED[key] = info
        out.append(info)
    return out


def find_policy(name: str) -> bool:
    """Whether policy ``name`` is registered, loading the entry points first when it is not (lazily)."""
    from .wireless.policies import POLICIES

    if name in POLICIES:
        return True
    load_entry_points()
    return name in POLICIES


def loaded_plugins() -> list[dict]:
    """The plugins loaded in this process, in load order, as JSON-ready dicts (for the results)."""
    return [p.to_dict() for p in _LOADED.values()]


def plugin_specs(policies: Iterable[str] | None = None) -> list[str]:
    """The ``--plugin`` specs loaded in this process (absolute paths for files), e.g. for worker processes:
    all of them, or those that registered one of ``policies``. Entry points are left out (workers find
    them lazily)."""
    wanted = None if policies is None else set(policies)
    return [p.spec for p in _LOADED.values()
            if p.source == "--plugin" and (wanted is None or wanted & set(p.policies))]
