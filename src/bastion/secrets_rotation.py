"""Master-key rotation: a new key encrypts, every stored secret is re-wrapped under it.

The sequence is crash-safe at every step:

1. the key file is atomically replaced by one holding the NEW key first and the
   old keys after it (either file works for every stored value);
2. every sealed column is re-wrapped in ONE database transaction (only the
   per-value data keys are re-encrypted; plaintexts are never touched);
3. the key file is atomically replaced by one holding only the new key.

Between 2 and 3 the audit checkpoints' MACs (under a key derived from the master
key) are signed again under the new key.

A crash after 1 or 2 leaves a file that opens everything; running the command
again finishes the job.
"""

from __future__ import annotations

from typing import Any

from bastion.audit.chain import checkpoint_authenticator, resign_checkpoints
from bastion.crypto import MasterKeyError, load_keyring_file, write_keyring_file
from bastion.settings import Settings
from bastion.storage import Database, migrate


async def rotate_master_key(settings: Settings) -> dict[str, Any]:
    """Rotate the master key of ``settings``; return what changed (no key material).

    Raises ``MasterKeyError`` when the master key is given inline (``env:``)
    rather than as a file, or when the key file is missing or unusable.
    """
    if settings.secrets.master_key is not None:
        raise MasterKeyError(
            "secrets.master_key is given inline; rotation rewrites a key file — move the key to "
            "secrets.master_key_file, or rotate by deploying a new key alongside the old one"
        )
    path = settings.master_key_path
    old = load_keyring_file(path)
    rotated = old.with_new_primary()
    write_keyring_file(path, rotated)

    url = settings.storage_url
    if url.startswith("sqlite"):
        await migrate(url)
    db = await Database.connect(url, pool_size=settings.storage.pool_size)
    try:
        changed = await db.rewrap_sealed(rotated.rewrap)
        # Audit checkpoint MACs are made under a key derived from the master key: sign
        # them again under the new one before the old key leaves the file.
        resigned = await resign_checkpoints(db.audit, checkpoint_authenticator(rotated))
    finally:
        await db.close()

    write_keyring_file(path, rotated.only_primary())
    return {
        "key_file": str(path),
        "old_key_ids": [k for k in old.key_ids],
        "new_key_id": rotated.primary.key_id,
        "rewrapped": changed,
        "resigned_checkpoints": resigned,
    }
