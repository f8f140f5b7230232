"""The Jinja2 environment for the power flow's templates in ``power/`` (Yosys scripts, testbench, STA Tcl).

Templates are files, never Python strings (style guide, "Code generation"); one strict environment renders
them all, so a misspelt context key fails loudly.
"""

from __future__ import annotations

from typing import Any

import jinja2

from axhw.common.paths import resource_dir
from axhw.rtl.generate import template_environment

__all__ = ["TEMPLATE_DIR", "render", "template_text"]

#: ``power/`` (the repository's, or the wheel's copy).
TEMPLATE_DIR = resource_dir("power")


def _env() -> jinja2.Environment:
    return template_environment(TEMPLATE_DIR)  # the one Jinja configuration axhw uses (StrictUndefined)


def render(name: str, **context: Any) -> str:
    """Render template ``name`` (e.g. ``"synth.ys.j2"``) with ``context``."""
    return _env().get_template(name).render(**context)


def template_text(name: str) -> str:
    """The raw template source (part of cache keys: editing a template invalidates cached results)."""
    return (TEMPLATE_DIR / name).read_text()
