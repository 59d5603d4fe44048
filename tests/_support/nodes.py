"""Several ``bastion serve`` processes of one deployment, and the CLI beside them.

The multinode and change-feed features run the same checks against every node:
``statuses`` asks each node in turn, ``cli`` runs ``bastion … --json`` in the
deployment's directory (another process, as an operator would).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from _support import BastionProcess, run_cli


class Nodes:
    """The nodes started from ``cwd/bastion.yaml`` (append them to :attr:`nodes`)."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.nodes: list[BastionProcess] = []

    def cli(self, *args: str) -> dict[str, Any]:
        """Run ``bastion *args --json -c bastion.yaml``; its parsed output (it must succeed).

        The options go before a ``--`` in ``args`` (after it everything is an argument,
        e.g. a kid that begins with ``-``).
        """
        options = ("--json", "-c", "bastion.yaml")
        cut = args.index("--") if "--" in args else len(args)
        result = run_cli(*args[:cut], *options, *args[cut:], cwd=self.cwd)
        assert result.returncode == 0, result.stderr
        parsed: dict[str, Any] = json.loads(result.stdout) if result.stdout.strip() else {}
        return parsed

    def statuses(self, path: str, headers: dict[str, str]) -> list[int]:
        """The status of ``GET path`` at each node, in order."""
        codes = []
        for node in self.nodes:
            with httpx.Client(base_url=node.url, verify=False, timeout=10) as http:
                codes.append(http.get(path, headers=headers).status_code)
        return codes

    def token(self, credentials: tuple[str, str], node: int = 0) -> str:
        """A client-credentials access token from node ``node``."""
        with httpx.Client(base_url=self.nodes[node].url, verify=False, timeout=10) as http:
            response = http.post(
                "/oauth2/token", auth=credentials, data={"grant_type": "client_credentials"}
            )
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
