"""Generate the documentation pages that must never drift from the code.

Run by mkdocs-gen-files at build time (``plugins: gen-files: scripts: [scripts/gen_docs.py]``), or by hand:
``python scripts/gen_docs.py OUTDIR`` writes the same pages under OUTDIR. Pages:

- ``reference/cli/``: one page per ``beamattn`` command, from the argparse parser of :mod:`beamattn.cli`;
- ``reference/scenario.md``: the scenario-file reference, from the code that validates a scenario
  (:func:`beamattn.wireless.scenario.parse_scenario` builds each table with ``_build`` from a config
  dataclass; ranges from :data:`beamattn.wireless.limits.RANGES`; defaults from a parsed minimal file);
- ``reference/api/``: one mkdocstrings page per public module of ``beamattn.core``, ``beamattn.wireless``
  and ``beamattn.linklevel`` (mkdocstrings renders each docstring with its shapes and units);
- ``tutorials/``: the jupytext percent-format scripts of ``tutorials/`` as pages (code and text);
- ``changelog.md``: CHANGELOG.md.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import io
import math
import os
import sys
import tokenize
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "scripts"):  # the package (a fresh clone without an install) and gen_docs_griffe
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from gen_docs_griffe import rst_to_md  # noqa: E402 - after the path is set

# The packages whose public functions and classes the API reference must cover (issue 15), and the top-level
# modules of the researcher's API (import beamattn: load_scenario, evaluate, ...; policy plugins).
API_PACKAGES = ("beamattn.core", "beamattn.wireless", "beamattn.linklevel")
API_MODULES = ("beamattn.api", "beamattn.plugins")


# --------------------------------------------------------------------------------------------- command line

def _cli_parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser], dict[str, str]]:
    """The top parser, its sub-parsers by command name, and each command's one-line help."""
    from beamattn.cli import build_parser

    parser = build_parser()
    subs: dict[str, argparse.ArgumentParser] = {}
    helps: dict[str, str] = {}
    for action in parser._actions:  # argparse keeps sub-parsers in a private list: no public accessor exists
        if isinstance(action, argparse._SubParsersAction):
            subs.update(action.choices)
            helps.update({a.dest: a.help or "" for a in action._choices_actions})
    return parser, subs, helps


def _md_cell(text: object) -> str:
    """Text safe inside a Markdown table cell (one line, ``|`` escaped)."""
    return " ".join(rst_to_md(str(text)).split()).replace("|", "\\|")


def _option_rows(parser: argparse.ArgumentParser) -> list[str]:
    rows = ["| argument | value | default | description |", "|---|---|---|---|"]
    for a in parser._actions:
        name = ", ".join(f"`{s}`" for s in a.option_strings) or f"`{a.dest}`"
        if a.nargs == 0:
            value = "flag"
        elif a.choices:
            value = " \\| ".join(f"`{c}`" for c in a.choices)
        else:
            value = f"`{a.metavar or a.dest.upper()}`" + (" ..." if a.nargs in ("+", "*") else "")
        if a.required or not a.option_strings:
            default = "required"
        elif a.default in (None, False, [], argparse.SUPPRESS):
            default = "–"
        else:
            default = f"`{a.default}`"
        rows.append(f"| {name} | {value} | {default} | {_md_cell((a.help or '').replace('%%', '%'))} |")
    return rows


def cli_pages() -> dict[str, str]:
    """``{path: markdown}`` of the command-line pages, from :func:`beamattn.cli.build_parser`."""
    os.environ["COLUMNS"] = "100"  # argparse wraps its help to the terminal width: fix it for a stable page
    parser, subs, helps = _cli_parsers()
    pages: dict[str, str] = {}
    index = ["# Command line", "", "Generated from the argparse parser of `beamattn/cli.py` at build time.", "",
             "```text", parser.format_help().rstrip(), "```", "", "| command | what it does |", "|---|---|"]
    for name, sub in subs.items():
        index.append(f"| [`beamattn {name}`]({name}.md) | {_md_cell(helps.get(name, ''))} |")
        lines = [f"# beamattn {name}", "", helps.get(name, ""), ""]
        if sub.description:
            lines += [sub.description, ""]
        lines += ["```text", sub.format_help().rstrip(), "```", "", *_option_rows(sub), "",
                  "Bad input is one line `beamattn " + name + ": error: ...` naming the argument, the value and "
                  "what was expected, and exit status 2.", ""]
        pages[f"reference/cli/{name}.md"] = "\n".join(lines)
    pages["reference/cli/index.md"] = "\n".join(index) + "\n"
    pages["reference/cli/SUMMARY.md"] = "\n".join(
        ["* [Overview](index.md)"] + [f"* [beamattn {n}]({n}.md)" for n in subs]) + "\n"
    return pages


# --------------------------------------------------------------------------------------------- scenario files

def _field_comments(cls: type) -> dict[str, str]:
    """``{field: trailing comment}`` of the annotated assignments in ``cls``'s body (``x: float = 1.0  # m``)."""
    import inspect
    import textwrap

    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
    body = ast.parse(source).body[0].body  # the class statement's body
    return {node.target.id: comments[node.lineno] for node in body
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.lineno in comments}


def _field_docs(cls: type) -> dict[str, str]:
    """``{field: description}`` from the class docstring's ``Args:`` section (griffe's Google parser), else the
    field's trailing comment."""
    from griffe import Docstring, DocstringSectionKind

    docs = _field_comments(cls)
    if cls.__doc__:
        parsed = Docstring(cls.__doc__, parser="google").parse(warn_missing_types=False)
        for section in parsed:
            if section.kind is DocstringSectionKind.parameters:
                docs.update({p.name: " ".join(p.description.split()) for p in section.value})
    return docs


def _default_text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, float) and math.isinf(value):
        return "`inf`"
    if isinstance(value, float):
        return f"`{value:g}`"  # 2.8e+10, not 28000000000.0
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, tuple):
        return "`" + str(list(value)).replace("'", '"') + "`"
    return f"`{value!r}`"


def _type_text(f: dataclasses.Field) -> str:
    t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    words = {"float": "number", "int": "integer", "bool": "boolean", "str": "string", "None": "none"}
    return " or ".join(words.get(part.strip(), part.strip()) for part in t.split("|"))


def _table(section: str, cls: type, defaults: Any, names: list[str], extra_rows: list[tuple] = (),
           required: tuple[str, ...] = ()) -> list[str]:
    """The Markdown table of ``[section]``: fields ``names`` of ``cls`` with the scenario's effective default
    (read from ``defaults``), ``required`` ones marked so."""
    from beamattn.wireless.limits import RANGES

    docs = _field_docs(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    rows = ["| field | type | default | range | description |", "|---|---|---|---|---|"]
    for row in extra_rows:
        rows.append("| " + " | ".join(row) + " |")
    for name in names:
        f = fields[name]
        rng = RANGES[name].describe() if name in RANGES else "–"
        if name == "seed":
            rng = "an integer in [0, 2^63)"
        default = "required" if name in required else _default_text(getattr(defaults, name))
        rows.append(f"| `{name}` | {_md_cell(_type_text(f))} | {default} | {rng} | "
                    f"{_md_cell(docs.get(name, ''))} |")
    return rows


def scenario_sections() -> dict[str, list[str]]:
    """``{table: [field, ...]}``: the fields a scenario file may set in each table, as the loader reads them.

    ``channel.BACKEND`` lists the fields of that back-end's config dataclass. Derived from the same functions
    the loader uses (``_toml_settable``, ``_backend_classes``): the test compares it with what the loader
    actually accepts.
    """
    from beamattn.wireless import scenario as S
    from beamattn.wireless.arrays import AntennaArray
    from beamattn.wireless.measurement import MeasurementConfig
    from beamattn.wireless.selector import SelectorConfig

    def settable(cls: type, skip: tuple[str, ...] = ()) -> list[str]:
        return [f.name for f in dataclasses.fields(cls) if S._toml_settable(f) and f.name not in skip]

    built = {"channel", "array", "codebook", "measurement", "selector", "training"}
    sections = {"scenario": [f.name for f in dataclasses.fields(S.Scenario)
                             if f.init and f.name not in built | {"backend", "policy_args", "source",
                                                                  "selector_explicit"}]}
    for backend in S.BACKENDS:
        sections[f"channel.{backend}"] = settable(S._backend_classes(backend)[0], skip=("array",))
    sections.update(array=settable(AntennaArray), codebook=settable(S.CodebookConfig),
                    measurement=settable(MeasurementConfig), selector=settable(SelectorConfig),
                    training=settable(S.TrainingConfig))
    return sections


def _class_defaults(cls: type) -> Any:
    """An object with each field's dataclass default (None for a required field, shown as "required")."""
    import types

    values = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            values[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            values[f.name] = f.default_factory()
        else:
            values[f.name] = None
    return types.SimpleNamespace(**values)


def _minimal(backend: str | None = None):
    from beamattn.wireless.scenario import parse_scenario

    doc: dict[str, Any] = {"scenario": {"name": "reference"}}
    if backend is not None:
        doc["channel"] = {"backend": backend}
    return parse_scenario(doc, source="<reference>")


def scenario_reference() -> str:
    """The scenario-file reference page (Markdown)."""
    from beamattn.wireless import scenario as S
    from beamattn.wireless.arrays import AntennaArray
    from beamattn.wireless.limits import RANGES
    from beamattn.wireless.measurement import MeasurementConfig
    from beamattn.wireless.policies import available_policies
    from beamattn.wireless.selector import SelectorConfig

    sections = scenario_sections()
    base = _minimal()
    out = ["# Scenario files", "",
           "Generated at build time from the code that validates a scenario "
           "(`beamattn/wireless/scenario.py`: `parse_scenario` builds each table from its config dataclass; "
           "the ranges are `beamattn/wireless/limits.py`'s `RANGES`). **Default** is the value a file that "
           "omits the field gets. Unknown or misspelt fields, values of the wrong type, values out of range "
           "and NaN are refused with one line naming the file, the table, the field and the value.", "",
           "A scenario file is TOML; `scenarios/*.toml` are examples. Every table is optional except "
           "`[scenario]` with its `name`:", "",
           "```toml", "[scenario]", 'name = "my-scenario"', "drops = 64", "", "[channel]",
           'backend = "geometric"', "speed_kmh = 60", "", "[measurement]", "set_b = 16", "```", "",
           "Checks across tables (made at load time, before anything is computed): `set_b` at most Set A's size "
           "`M`; `selector.history` at most `measurement.history`; `selector.topk` at most `M` in `topk` mode; "
           "wide beams (`num_wide`) only on a ULA, dividing `M`, every narrow beam in visible space; a drop long "
           "enough for `history` reports plus the delay; the chunk's tensors within the memory limit (half the "
           "RAM or `$BEAMATTN_MEMORY_LIMIT`, `estimate_memory`).", ""]

    out += ["## `[scenario]`", "", "What to evaluate: the name (it names result folders: letters, digits and "
            "`_ . + = -`), the evaluation seed, the number of drops, the transmit SNR and the policies.", ""]
    rows = _table("scenario", S.Scenario, base, [n for n in sections["scenario"] if n != "policies"],
                  required=("name",))
    rows.append(f"| `policies` | list of strings | {_default_text(base.policies)} | names of registered policies | "
                "policies to evaluate (see the list below) |")
    out += rows + ["", "Registered policies: " + ", ".join(f"`{p}`" for p in available_policies()) + ".", ""]

    out += ["## `[channel]`", "",
            "`backend` selects the channel back-end; the other fields are those of its config dataclass. "
            "`speed_kmh` may be given instead of `speed` (m/s).", ""]
    for backend in S.BACKENDS:
        cls = S._backend_classes(backend)[0]
        required: tuple[str, ...] = ()
        try:
            channel_defaults = _minimal(backend).channel
        except S.ScenarioError:  # a back-end with required fields (e.g. the file's path): the class defaults
            channel_defaults = _class_defaults(cls)
            required = tuple(f.name for f in dataclasses.fields(cls)
                             if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
        summary = _md_cell((cls.__doc__ or "").strip().split("\n\n")[0])
        out += [f"### `backend = \"{backend}\"` (`{cls.__module__}.{cls.__name__}`)", "", summary, ""]
        extra = [("`backend`", "string", '`"geometric"`', " \\| ".join(f'`"{b}"`' for b in S.BACKENDS),
                  "the channel back-end"),
                 ("`speed_kmh`", "number", "–", RANGES["speed_kmh"].describe(), "user speed in km/h (sets `speed`)")]
        out += _table(f"channel.{backend}", cls, channel_defaults, sections[f"channel.{backend}"], extra,
                      required) + [""]

    for name, cls, defaults, intro in (
            ("array", AntennaArray, base.array, "The base station's antenna array (`N = num_rows x num_cols`)."),
            ("codebook", S.CodebookConfig, base.codebook, "Set A: the DFT codebook (`oversampling` per axis) and "
             "the wide beams of hierarchical search (`num_wide`: 0 = none, else an integer >= 2 dividing `M`)."),
            ("measurement", MeasurementConfig, base.measurement, (MeasurementConfig.__doc__ or "").split("\n")[0]),
            ("selector", SelectorConfig, base.selector, "The attention selector (`beamattn.wireless.selector`). "
             "`grid` (`[M_v, M_h]`) is set from a UPA's DFT codebook; `grid = [1, M]` forces 1-D keys."),
            ("training", S.TrainingConfig, base.training, "`beamattn train`: training drops are drawn from seeds "
             "disjoint from the evaluation seeds by construction.")):
        out += [f"## `[{name}]`", "", intro, ""] + _table(name, cls, defaults, sections[name]) + [""]
    out += ["## `[policy.NAME]`", "",
            "Keyword arguments of policy NAME, passed to its constructor, e.g. `[policy.stale] every = 5`. "
            "NAME must be a registered policy; an unknown argument is refused when the policy is made.", ""]
    return "\n".join(out)


# --------------------------------------------------------------------------------------------- API reference

def api_modules() -> list[str]:
    """Dotted names of the public modules and packages of :data:`API_PACKAGES` (none starting with ``_``)."""
    names: list[str] = []
    for pkg in API_PACKAGES:
        for path in sorted((ROOT / pkg.replace(".", "/")).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            if any(p.startswith("_") for p in parts) or "__pycache__" in path.parts:
                continue
            names.append(".".join(parts))
    names += [m for m in API_MODULES if (ROOT / (m.replace(".", "/") + ".py")).exists()]
    return sorted(names)


def _is_package(mod: str) -> bool:
    return (ROOT / mod.replace(".", "/") / "__init__.py").exists()


def _module_file(mod: str) -> Path:
    return ROOT / mod.replace(".", "/") / "__init__.py" if _is_package(mod) else ROOT / (mod.replace(".", "/") + ".py")


def _lazy_anchor(mod: str, name: str) -> str:
    """The anchor of a name that package ``mod`` exports through its module ``__getattr__`` (imported on first
    use, which static analysis cannot follow): where the object is defined, found by importing it; a class
    made inside a function (``SelectorBlock``) is documented on the package's page under ``mod.name``."""
    import importlib

    obj = getattr(importlib.import_module(mod), name)
    if "<locals>" in obj.__qualname__:
        return f"{mod}.{name}"
    return f"{obj.__module__}.{obj.__qualname__}"


def export_anchors(mod: str) -> dict[str, str]:
    """``{name: anchor}`` for each name of ``mod.__all__`` (read statically by griffe): the identifier under
    which mkdocstrings documents it, i.e. the object's path in its defining module."""
    import griffe

    obj = griffe.load(mod, search_paths=[str(ROOT)], resolve_aliases=True, resolve_external=False)
    anchors: dict[str, str] = {}
    for name in obj.exports or []:
        name = str(name)
        member = obj.members.get(name)
        if member is None or (member.is_function and name == "__getattr__"):
            anchors[name] = _lazy_anchor(mod, name)
        elif member.is_alias:
            anchors[name] = member.target_path
        elif member.is_module:  # ``from .attend import attend``: the submodule shadows its function
            anchors[name] = f"{member.path}.{name}"
        else:
            anchors[name] = member.path
    return anchors


def _selector_block_section() -> str:
    """``SelectorBlock`` is a class made on first use (Sionna is imported lazily), so static analysis cannot
    see it: its docstring and signatures are read from the source of ``beamattn/linklevel/chain.py``."""
    source = (ROOT / "beamattn/linklevel/chain.py").read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and node.name == "SelectorBlock":
            doc = rst_to_md(ast.get_docstring(node) or "")
            sigs = [f"{f.name}({ast.unparse(f.args)})" for f in node.body
                    if isinstance(f, ast.FunctionDef) and f.name in ("__init__", "call")]
            return "\n".join(["## `beamattn.linklevel.SelectorBlock` { #beamattn.linklevel.SelectorBlock }", "",
                              "A Sionna `Block` (made when first used, so that importing `beamattn.linklevel` "
                              "does not import Sionna).", "", "```python",
                              *[f"SelectorBlock.{s}" for s in sigs], "```", "", doc, ""])
    raise RuntimeError("beamattn/linklevel/chain.py: class SelectorBlock not found")


def api_pages() -> dict[str, str]:
    """One page per module (its docstring and members) and per package (its docstring and a table of the
    names it exports, linked to where each is documented)."""
    pages: dict[str, str] = {}
    summary = ["* [Overview](index.md)"]
    index = ["# API reference", "",
             "Generated from the docstrings at build time (mkdocstrings). Every public function and class of "
             "`beamattn.core`, `beamattn.wireless` and `beamattn.linklevel`, and the researcher's API "
             "(`beamattn.api`, re-exported by `import beamattn`), with shapes and units as the "
             "docstrings give them. A package's page lists the names it exports (`__all__`) and links each to "
             "the module that defines it.", "", "| module | summary |", "|---|---|"]
    for mod in api_modules():
        doc = ast.get_docstring(ast.parse(_module_file(mod).read_text())) or ""
        first = doc.strip().split("\n\n")[0]
        if _is_package(mod):
            body = [f"# `{mod}`", "", f"::: {mod}", "    options:", "      members: false",
                    "      show_root_heading: false", ""]
            anchors = export_anchors(mod)
            if anchors:
                body += ["| name | documented in |", "|---|---|"]
                for name, anchor in anchors.items():  # autorefs link; a section of this page: a local link
                    link = f"(#{anchor})" if anchor == f"{mod}.{name}" else f"[{anchor}]"
                    body.append(f"| [`{name}`]{link} | `{anchor.rsplit('.', 1)[0]}` |")
                body.append("")
            if mod == "beamattn.linklevel":
                body.append(_selector_block_section())
        else:
            body = [f"# `{mod}`", "", f"::: {mod}", "    options:", "      show_root_heading: false", ""]
        pages[f"reference/api/{mod}.md"] = "\n".join(body)
        summary.append(f"* [{mod}]({mod}.md)")
        index.append(f"| [`{mod}`]({mod}.md) | {_md_cell(first)} |")
    pages["reference/api/index.md"] = "\n".join(index) + "\n"
    pages["reference/api/SUMMARY.md"] = "\n".join(summary) + "\n"
    return pages


# --------------------------------------------------------------------------------------------- tutorials

def tutorial_files() -> list[Path]:
    return sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py"))


def tutorial_pages() -> dict[str, str]:
    """Each jupytext percent-format script of ``tutorials/`` as a page: Markdown cells as text, code cells as
    Python blocks (jupytext parses the cells)."""
    import jupytext

    pages: dict[str, str] = {}
    summary = ["* [Overview](index.md)"]
    index = ["# Tutorials", "",
             "Each tutorial is a [jupytext](https://jupytext.readthedocs.io) percent-format script in "
             "`tutorials/`: run it as a script (`.venv/bin/python tutorials/NAME.py`), or open it as a notebook "
             "in Jupyter with jupytext installed. CI runs every tutorial from start to end on small settings "
             "(`BEAMATTN_TUTORIAL_SMALL=1`, `tests/test_tutorials.py`).", ""]
    for path in tutorial_files():
        nb = jupytext.read(path, fmt="py:percent")
        lines: list[str] = []
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                lines += [cell.source, ""]
            elif cell.source.strip():
                lines += ["```python", cell.source, "```", ""]
        lines += ["", f"*Source: `tutorials/{path.name}`.*", ""]
        name = path.stem
        heads = [ln for cell in lines for ln in cell.splitlines() if ln.startswith("# ")]
        title = heads[0][2:].strip() if heads else name
        pages[f"tutorials/{name}.md"] = "\n".join(lines)
        number, _, rest = title.partition(". ")  # "1. Title" in a nav list would start a nested list
        summary.append(f"* [{number} · {rest}]({name}.md)" if rest else f"* [{title}]({name}.md)")
        index.append(f"- [{title}]({name}.md) — `tutorials/{path.name}`")
    pages["tutorials/index.md"] = "\n".join(index) + "\n"
    pages["tutorials/SUMMARY.md"] = "\n".join(summary) + "\n"
    return pages


# --------------------------------------------------------------------------------------------- all pages

def all_pages() -> dict[str, str]:
    pages = {**cli_pages(), **api_pages(), **tutorial_pages(), "reference/scenario.md": scenario_reference()}
    changelog = ROOT / "CHANGELOG.md"
    if changelog.exists():
        pages["changelog.md"] = changelog.read_text()
    return pages


def _write_with_gen_files() -> None:
    import mkdocs_gen_files

    for path, text in all_pages().items():
        with mkdocs_gen_files.open(path, "w") as f:
            f.write(text)


if __name__ == "<run_path>":  # run by mkdocs-gen-files (runpy.run_path)
    _write_with_gen_files()
elif __name__ == "__main__":
    out_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "build/docs-pages")
    for rel, text in all_pages().items():
        (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (out_dir / rel).write_text(text)
    print(f"wrote {len(all_pages())} pages under {out_dir}")
