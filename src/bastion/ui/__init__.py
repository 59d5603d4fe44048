"""bastion.ui: the server-rendered pages of the browser interaction (Jinja2, autoescaped).

Templates live in ``ui/templates/``, the one stylesheet in ``ui/static/``; no page loads
anything from another site or runs a script (the CSP forbids both), and every form works
without JavaScript. :func:`render` turns a template and its values into HTML; the views
that choose what to render are ``http/endpoints/login.py``.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # jinja2 is imported when the first page is rendered, not at start-up
    import jinja2

__all__ = ["render", "stylesheet"]


@functools.cache
def _environment() -> jinja2.Environment:
    # Imported here: a bastion that serves no browser page never loads jinja2
    # (tests/features/serve/test_idle_imports.py keeps start-up lean).
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("bastion.ui", "templates"),
        # Every value is escaped unless a template says otherwise (none does).
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(template: str, **values: Any) -> str:
    """The HTML of ``template`` with ``values`` (a missing value is an error, not blank)."""
    return _environment().get_template(template).render(**values)


@functools.cache
def stylesheet() -> bytes:
    """The pages' stylesheet (served by bastion itself: no third-party assets)."""
    return resources.files("bastion.ui").joinpath("static/bastion.css").read_bytes()
