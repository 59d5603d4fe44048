"""``bastion signing-keys list|rotate|retire``: the token-signing keys from the command line.

bastion keeps one active key per algorithm (``signing_keys.algorithm`` for access
tokens, each of ``signing_keys.id_token_algorithms`` for ID tokens); every command takes
``--algorithm`` to act on one of them: ``list`` shows only its keys, ``rotate`` rotates
it (default: ``signing_keys.algorithm``), ``retire`` refuses a kid of another algorithm.

The commands work on the stored keys through
:class:`~bastion.oauth.signing_keys.SigningKeyManager` and announce every change
on the shared channel ``"signing-keys"``: a server on the same Redis reloads at
once; with in-process shared state it sees the change at its next periodic
refresh (within 30 s). Nothing printed ever contains private key material:
records are rendered from an explicit list of public members.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from bastion.cli.output import ConfigOption, JsonOption, console, emit
from bastion.cli.running import handles_errors, read_settings

# Every `bastion` call (--help too) loads the command modules; the stores and services they
# drive load when a command runs.
if TYPE_CHECKING:
    from bastion.crypto import SigningAlgorithm
    from bastion.oauth.operations import SigningKeyOperations
    from bastion.storage import SigningKey

signing_keys_app = typer.Typer(
    help="Token signing keys, one active key per algorithm: list, rotate, retire.",
    no_args_is_help=True,
)

T = TypeVar("T")

STATE_STYLES = {"next": "cyan", "active": "bold green", "retiring": "yellow", "retired": "dim"}


class Algorithm(StrEnum):
    """The signing algorithms a new key can use."""

    ES256 = "ES256"
    RS256 = "RS256"
    PS256 = "PS256"
    EdDSA = "EdDSA"


AlgorithmOption = typer.Option(
    None,
    "--algorithm",
    "--alg",
    help="Algorithm of the key to rotate (default: signing_keys.algorithm); keys of "
    "other algorithms are not touched.",
)
ListAlgorithmOption = typer.Option(
    None, "--algorithm", "--alg", help="Only the keys of this algorithm."
)
RetireAlgorithmOption = typer.Option(
    None,
    "--algorithm",
    "--alg",
    help="Refuse unless the key is of this algorithm (a guard against a mistyped kid).",
)


def key_document(key: SigningKey) -> dict[str, Any]:
    """The public description of a stored key (never its sealed private key)."""
    from bastion.oauth.views import signing_key_view  # imported when used: a fast --help

    return signing_key_view(key)


_TABLE_WIDTH = 160


def _short(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ") if moment is not None else ""


def _state(state: str) -> str:
    return f"[{STATE_STYLES.get(state, 'default')}]{state}[/]"


def _operate(config: Path | None, work: Callable[[SigningKeyOperations], Awaitable[T]]) -> T:
    """Run ``work`` on the signing-key operations (``cli/context.py``: events recorded after)."""
    from bastion.cli.context import run_operations
    from bastion.oauth.operations import SigningKeyOperations
    from bastion.oauth.signing_keys import SigningKeyManager

    settings = read_settings(config)
    return run_operations(
        settings,
        lambda stores, recorder: SigningKeyOperations(
            SigningKeyManager(stores.db, stores.keyring, settings, stores.shared), recorder
        ),
        work,
    )


@signing_keys_app.command("list")
@handles_errors
def list_keys(
    config: Path | None = ConfigOption,
    alg: Algorithm | None = ListAlgorithmOption,
    as_json: bool = JsonOption,
) -> None:
    """List every signing key with its algorithm and state: next, active, retiring or retired.

    There is one active key per algorithm. Shows the stored states; a running server
    applies due transitions (a ``next`` key whose activation time passed) at its next
    refresh.
    """
    stored: list[SigningKey] = _operate(config, lambda ops: ops.list())
    keys = [key for key in stored if alg is None or key.alg == alg.value]
    docs = [key_document(key) for key in keys]

    def human() -> None:
        if not docs:
            console.print("no signing keys yet — `bastion serve` creates the first one")
            return
        table = Table("kid", "alg", "state", "created", "activates", "retires")
        for column in table.columns:
            column.no_wrap = True
        for key in keys:
            table.add_row(
                key.kid,
                key.alg,
                _state(key.state),
                _short(key.created_at),
                _short(key.activates_at),
                _short(key.retired_at or key.retires_at),
            )
        # Never truncate a kid: it is what `retire` takes, copied from here. A terminal's
        # width is respected (other columns shrink); piped output gets room for everything.
        out = console if console.is_terminal else Console(highlight=False, width=_TABLE_WIDTH)
        out.print(table)

    emit({"keys": docs}, as_json, human)


@signing_keys_app.command("rotate")
@handles_errors
def rotate(
    config: Path | None = ConfigOption,
    alg: Algorithm | None = AlgorithmOption,
    now: bool = typer.Option(
        False,
        "--now",
        help=(
            "Emergency: make the new key active at once (no pre-publication); the previous "
            "key of its algorithm becomes retiring. Then `retire` the old key if it is compromised."
        ),
    ),
    as_json: bool = JsonOption,
) -> None:
    """Create a new signing key of one algorithm: published in the JWKS now, signing after
    signing_keys.prepublish.

    The previous key of that algorithm stays published until every token it signed has
    expired; the keys of other algorithms are not touched.
    """
    algorithm: SigningAlgorithm | None = alg.value if alg is not None else None
    key: SigningKey = _operate(config, lambda ops: ops.rotate(algorithm, immediate=now))
    doc = key_document(key)

    def human() -> None:
        if key.state == "active":
            console.print(
                f"[green]✓[/] signing key {key.kid} ({key.alg}) is active now; "
                f"the previous {key.alg} key, if any, is retiring"
            )
        else:
            console.print(
                f"[green]✓[/] signing key {key.kid} ({key.alg}) is published as next; "
                f"it signs from {doc['activates_at']}"
            )

    emit({"key": doc}, as_json, human)


@signing_keys_app.command("retire")
@handles_errors
def retire(
    kid: str = typer.Argument(..., metavar="KID", help="The kid of the key to retire."),
    config: Path | None = ConfigOption,
    alg: Algorithm | None = RetireAlgorithmOption,
    as_json: bool = JsonOption,
) -> None:
    """Retire a key at once (compromise): it leaves the JWKS and its tokens stop verifying.

    The active key of an algorithm cannot be retired: run `bastion signing-keys rotate
    --algorithm ALG --now` first.
    A kid is base64url and may begin with "-": put it after "--", as in
    `bastion signing-keys retire -- -Xb3...`.
    """
    algorithm: SigningAlgorithm | None = alg.value if alg is not None else None
    key: SigningKey = _operate(config, lambda ops: ops.retire(kid, algorithm))
    doc = key_document(key)

    def human() -> None:
        console.print(
            f"[green]✓[/] signing key {key.kid} is retired: removed from the JWKS; "
            "tokens it signed are no longer accepted"
        )

    emit({"key": doc}, as_json, human)


__all__ = ["Algorithm", "key_document"]
