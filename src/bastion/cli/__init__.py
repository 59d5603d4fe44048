"""The ``bastion`` command line (typer + rich).

Every command has ``--help`` and ``--json``; errors are one line and a
non-zero exit. :func:`main` is the console-script entry point.
"""

from __future__ import annotations

from bastion.cli.app import app, main

__all__ = ["app", "main"]
