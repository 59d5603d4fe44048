"""``bastion secrets …``: the master key that seals secrets at rest."""

from __future__ import annotations

from pathlib import Path

import typer

from bastion.cli.output import ConfigOption, JsonOption, console, emit
from bastion.cli.running import handles_errors, read_settings, run

__all__ = ["secrets_app"]

secrets_app = typer.Typer(
    help="Secrets at rest: the master key encrypting signing keys, TOTP seeds, webhook secrets.",
    no_args_is_help=True,
)


@secrets_app.command("rotate-master-key")
@handles_errors
def rotate_master_key(config: Path | None = ConfigOption, as_json: bool = JsonOption) -> None:
    """Generate a new master key and re-wrap every stored secret under it.

    Crash-safe: the key file first holds the new key and the old one, every
    sealed value is re-wrapped in one database transaction, then the old key is
    dropped from the file. Needs the master key to be a file (secrets.master_key_file
    or the development default), not an environment value.
    """
    from bastion.secrets_rotation import rotate_master_key as do_rotate

    settings = read_settings(config)
    result = run(do_rotate(settings))

    def human() -> None:
        console.print(
            f"[green]✓[/] master key rotated: {result['old_key_ids']} → {result['new_key_id']}; "
            f"{result['rewrapped']} stored secret(s) re-wrapped; key file {result['key_file']}"
        )

    emit(result, as_json, human)


_KEY_FILE_ARGUMENT = typer.Argument(
    ...,
    help="Where to write the new master key file (e.g. /etc/bastion/master.key); must not exist.",
)


@secrets_app.command("init-master-key")
@handles_errors
def init_master_key(path: Path = _KEY_FILE_ARGUMENT, as_json: bool = JsonOption) -> None:
    """Create a master key file for production: one new key, mode 0600, never overwriting.

    Point secrets.master_key_file at it (every node of a cluster uses the same file, as
    it uses the same api_keys.pepper) and back it up: the secrets sealed under it cannot
    be opened without it. The key itself is never printed, only its public id.
    """
    from bastion.crypto.envelope import create_keyring_file

    keyring = create_keyring_file(path)
    result = {"key_file": str(path), "key_id": keyring.primary.key_id}

    def human() -> None:
        console.print(
            f"[green]✓[/] master key {result['key_id']} written to {path} (mode 0600); set "
            f"secrets.master_key_file: {path} on every node and back the file up"
        )

    emit(result, as_json, human)
