"""The documentation cannot drift from the code: generated references, the built site, CITATION, CHANGELOG.

The scenario-file reference is compared with what the loader really accepts, found by asking it: a field
it does not know is refused with the list of the fields it knows. The API check reads the site that
``make docs`` built (``BEAMATTN_DOCS_SITE``, set by ``make docs``; skipped without it); the generator needs
the ``docs`` extra (griffe, jupytext; skipped without it: ``make docs`` runs this file once installed).
"""

from __future__ import annotations

import ast
import os
import re
import tomllib
from pathlib import Path

import pytest
from script_loader import load_script

import beamattn
from beamattn.cli import build_parser
from beamattn.wireless.limits import RANGES
from beamattn.wireless.scenario import BACKENDS, ScenarioError, parse_scenario

ROOT = Path(__file__).resolve().parent.parent
UNKNOWN = "zz_not_a_field"


@pytest.fixture(scope="module")
def gen_docs():
    pytest.importorskip("griffe", reason="the docs extra (make docs) generates the pages")
    pytest.importorskip("jupytext", reason="the docs extra (make docs) generates the pages")
    return load_script("gen_docs")


def accepted_fields(doc: dict, table: str) -> set[str]:
    """The fields the loader accepts in ``table`` of ``doc``: it refuses an unknown one and lists the known."""
    section = doc.setdefault(table, {})
    section[UNKNOWN] = 1
    with pytest.raises(ScenarioError) as info:
        parse_scenario(doc, source="probe.toml")
    message = str(info.value)
    assert f"unknown field {UNKNOWN!r}" in message, message
    return set(ast.literal_eval(message.rsplit("expected one of ", 1)[1]))


def validated_fields() -> dict[str, set[str]]:
    """``{section title in the reference: accepted fields}`` for every table and every channel back-end."""
    name = {"name": "probe"}
    out = {"scenario": accepted_fields({"scenario": dict(name)}, "scenario")}
    for backend in BACKENDS:
        out[f"channel.{backend}"] = accepted_fields({"scenario": dict(name), "channel": {"backend": backend}},
                                                    "channel")
    for table in ("array", "codebook", "measurement", "selector", "training"):
        out[table] = accepted_fields({"scenario": dict(name)}, table)
    return out


def documented_rows(page: str) -> dict[str, dict[str, list[str]]]:
    """``{section: {field: [cells]}}`` of the reference page's tables (``## `[table]``` and, under
    ``[channel]``, ``### `backend = "NAME"```)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in page.splitlines():
        if m := re.match(r"## `\[([a-z_.A-Z]+)\]`", line):
            current = m.group(1)
            sections.setdefault(current, {})
        elif m := re.match(r'### `backend = "([^"]+)"`', line):
            current = f"channel.{m.group(1)}"
            sections.setdefault(current, {})
        elif current and (m := re.match(r"\| `([a-z_0-9]+)` \|(.*)\|$", line)):
            sections[current][m.group(1)] = [c.strip() for c in re.split(r"(?<!\\)\|", m.group(2))]
    return sections


def test_scenario_reference_documents_exactly_the_validated_fields(gen_docs):
    rows = documented_rows(gen_docs.scenario_reference())
    for section, fields in validated_fields().items():
        assert section in rows, f"the scenario reference has no section for [{section}]"
        missing = fields - set(rows[section])
        assert not missing, f"[{section}]: validated fields missing from the reference: {sorted(missing)}"
        extra = set(rows[section]) - fields
        assert not extra, f"[{section}]: the reference documents fields the loader refuses: {sorted(extra)}"


def test_scenario_reference_ranges_and_defaults_are_the_codes(gen_docs):
    rows = documented_rows(gen_docs.scenario_reference())
    base = parse_scenario({"scenario": {"name": "probe"}})
    for section, fields in rows.items():
        for name, (type_, default, rng, _doc) in fields.items():
            if name in RANGES and name != "seed":
                assert rng == RANGES[name].describe(), (section, name, rng)
    # Defaults are the values a file that omits the field gets (here, a few that the loader sets itself).
    assert rows["array"]["num_cols"][1] == f"`{base.array.num_cols}`"  # 16: the loader's ULA, not a class default
    assert rows["measurement"]["set_b"][1] == f"`{base.measurement.set_b}`"
    assert rows["scenario"]["name"][1] == "required"


def test_every_scenario_table_has_a_section(gen_docs):
    page = gen_docs.scenario_reference()
    with pytest.raises(ScenarioError) as info:
        parse_scenario({"scenario": {"name": "probe"}, UNKNOWN: {}})
    tables = ast.literal_eval(str(info.value).rsplit("expected one of ", 1)[1])
    for table in tables:
        assert f"## `[{table}" in page, f"no section for [{table}]"


def test_a_missing_field_would_be_caught(gen_docs):
    """The check above fails when the generator drops a field (the property the test exists for)."""
    page = gen_docs.scenario_reference()
    broken = "\n".join(ln for ln in page.splitlines() if not ln.startswith("| `delay` |"))
    rows = documented_rows(broken)
    assert "delay" in validated_fields()["measurement"] and "delay" not in rows["measurement"]


def test_command_pages_list_every_command_and_option(gen_docs):
    pages = gen_docs.cli_pages()
    parser = build_parser()
    subs = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices
    for name, sub in subs.items():
        page = pages[f"reference/cli/{name}.md"]
        for action in sub._actions:
            for flag in action.option_strings:
                assert f"`{flag}`" in page, f"beamattn {name}: option {flag} missing from its page"
        assert f"[`beamattn {name}`]({name}.md)" in pages["reference/cli/index.md"]


def _api_ids(site: Path) -> set[str]:
    ids: set[str] = set()
    for html in (site / "reference" / "api").rglob("*.html"):
        ids.update(re.findall(r'id="(beamattn\.[^"]+)"', html.read_text()))
    return ids


def _public_names(path: Path) -> tuple[list[str], set[str]]:
    """``__all__`` of the module file, else its public top-level functions and classes (read statically), and
    the names the module binds at top level (an exported name it does not bind is made by ``__getattr__``)."""
    tree = ast.parse(path.read_text())
    bound = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    bound |= {a.asname or a.name for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
    bound |= {t.id for n in tree.body if isinstance(n, (ast.Assign, ast.AnnAssign))
              for t in (n.targets if isinstance(n, ast.Assign) else [n.target]) if isinstance(t, ast.Name)}
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return list(ast.literal_eval(node.value)), bound
    return [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))
            and not n.name.startswith("_")], bound


def test_api_reference_shows_every_public_name():
    site = os.environ.get("BEAMATTN_DOCS_SITE")
    if not site:
        pytest.skip("reads the built site: run `make docs` (it sets BEAMATTN_DOCS_SITE)")
    ids = _api_ids(Path(site))
    checked = 0
    for pkg in ("core", "wireless", "linklevel", "api.py", "plugins.py"):
        for path in sorted((ROOT / "beamattn" / pkg).rglob("*.py")) if not pkg.endswith(".py") else \
                [p for p in [ROOT / "beamattn" / pkg] if p.exists()]:
            rel = path.relative_to(ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            if any(p.startswith("_") for p in parts):
                continue
            module = ".".join(parts)
            names, bound = _public_names(path)
            for name in names:
                # documented in this module or, for a re-export, in a module below it; a name made on first
                # use by the module's __getattr__ (Sionna imported lazily) anywhere in its package
                where = module if name in bound else f"beamattn.{pkg.removesuffix('.py')}"
                found = f"{module}.{name}" in ids or any(i.startswith(where + ".") and i.endswith("." + name)
                                                          for i in ids)
                assert found, f"{module}.{name} is public but has no entry in the API reference"
                checked += 1
    assert checked > 150  # every module was read


def test_citation_cff_is_valid_cff_1_2_0():
    import yaml  # PyYAML comes with dask and mkdocs

    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    for key in ("message", "title", "authors"):  # the keys CFF 1.2.0 requires
        assert cff.get(key), f"CITATION.cff: required key {key!r} missing or empty"
    for author in cff["authors"]:
        assert author.get("name") or author.get("family-names"), f"CITATION.cff: author {author} has no name"
    assert cff["version"] == beamattn.__version__
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert cff["license"] == pyproject["project"]["license"]
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(cff["date-released"]))


def test_changelog_has_the_version_in_keep_a_changelog_form():
    text = (ROOT / "CHANGELOG.md").read_text()
    versions = re.findall(r"^## \[([^\]]+)\]", text, flags=re.M)
    assert versions[0] == "Unreleased"
    assert beamattn.__version__ in versions, f"CHANGELOG.md has no section for version {beamattn.__version__}"
    kinds = set(re.findall(r"^### (.+)$", text, flags=re.M))
    assert kinds <= {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}, kinds


def test_every_public_function_and_class_has_a_docstring():
    """The API reference shows what the docstrings say: a public name without one would be a bare signature."""
    bare = []
    for pkg in ("core", "wireless", "linklevel"):
        for path in sorted((ROOT / "beamattn" / pkg).rglob("*.py")):
            if any(p.startswith("_") and p != "__init__.py" for p in path.relative_to(ROOT).parts):
                continue
            tree = ast.parse(path.read_text())
            names, _ = _public_names(path)
            for node in tree.body:
                if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in names:
                    assigned = any(isinstance(s, ast.Assign) and any(getattr(t, "id", None) == "__doc__"
                                                                     for t in s.targets) for s in node.body)
                    if not (ast.get_docstring(node) or assigned):
                        bare.append(f"{path.relative_to(ROOT)}: {node.name}")
    assert not bare, "public names without a docstring: " + ", ".join(bare)
