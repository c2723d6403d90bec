"""A griffe extension for the API reference: the docstrings' Sphinx-style inline markup as Markdown.

The docstrings use ``x`` and :func:`~beamattn.core.attend` (readable in ``help()``); mkdocstrings renders
Markdown, so this extension turns them into code spans before the docstrings are parsed
(``mkdocs.yml``: ``extensions: [scripts/gen_docs_griffe.py]``).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:func|class|meth|mod|data|attr|obj):`~?([^`]+)`")


def rst_to_md(text: str) -> str:
    """Sphinx-style inline markup as Markdown: ``x`` and :func:`~a.b` become code spans."""
    return _ROLE.sub(lambda m: f"`{m.group(1)}`", text).replace("``", "`")


class SphinxRolesToMarkdown(griffe.Extension):
    """Rewrite each loaded object's docstring: ``:role:`~a.b``` and ````x```` become ```a.b``` / ```x```."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:  # noqa: ARG002 - griffe's hook
        if obj.docstring is not None:
            obj.docstring.value = rst_to_md(obj.docstring.value)
