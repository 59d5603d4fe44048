"""Envelope encryption of secrets at rest (signing keys, TOTP seeds, upstream credentials).

Every value is sealed with its own fresh 256-bit data key (DEK) under AES-256-GCM.
The DEK is then wrapped (AES-256-GCM again) with the *primary* master key of a
:class:`Keyring`. The sealed text is ASCII and holds nothing secret in clear::

    bse1.<key id>.<b64url(nonce + wrapped DEK + tag)>.<b64url(nonce + ciphertext + tag)>

- The data is authenticated with the caller's *context* as associated data
  (e.g. ``"signing_keys.private_key:<kid>"``), so a sealed value copied into
  another row or column fails to open.
- The wrapped DEK is authenticated with the format version and the master key
  id, so the envelope header cannot be edited either.
- Because only the DEK depends on the master key, :meth:`Keyring.rewrap` can
  move a value to a new master key without the context or the plaintext.

Master keys are written ``bmk1:<base64url of 32 bytes>``. A master key file holds
one key per line, the first being the primary (the only one that seals); the
others only open values sealed before a rotation. Blank lines and ``#``
comments are ignored. The file must not be accessible to group or others.

Rotating the master key (what ``bastion secrets rotate-master-key`` does):

1. ``write_keyring_file(path, keyring.with_new_primary())`` — the file now holds
   the new primary *followed by* every old key. Crash here: bastion starts and
   opens everything (old keys are still present), new values use the new key.
2. In ONE database transaction, replace every sealed column value ``v`` with
   ``keyring.rewrap(v)``. Crash or error here: the transaction rolls back; the
   file from step 1 still opens every value.
3. ``write_keyring_file(path, keyring.only_primary())`` — old keys are dropped
   only once no stored value needs them. Crash here: the file is either the
   step-1 or the step-3 version (the write is an atomic rename), both work.

Every file write is atomic (temporary file, fsync, rename, fsync of the
directory), so at no point is there a missing, empty or half-written key file.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import re
import secrets
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bastion.crypto.errors import DecryptionError, MasterKeyError
from bastion.files import write_durably

__all__ = [
    "Keyring",
    "MasterKey",
    "create_keyring_file",
    "load_keyring_file",
    "parse_keyring_text",
    "write_keyring_file",
]

_MASTER_KEY_PREFIX = "bmk1:"
_SEALED_VERSION = "bse1"
_KEY_BYTES = 32
_NONCE_BYTES = 12
_TAG_BYTES = 16
_WRAPPED_DEK_BYTES = _NONCE_BYTES + _KEY_BYTES + _TAG_BYTES
_KEY_ID_DOMAIN = b"bastion-kek-id"
_KEY_ID_RE = re.compile(r"[0-9a-f]{16}")
_B64URL_RE = re.compile(r"[A-Za-z0-9_-]*")

_FILE_HEADER = (
    "# bastion master keys: one per line, the FIRST line is the primary (it seals new values);\n"
    "# the others only open values sealed before a rotation. Keep this file secret (mode 0600)\n"
    "# and backed up: a lost master key means every secret sealed under it is lost.\n"
)


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes | None:
    """Decode canonical unpadded base64url, or return None.

    Non-canonical encodings (stray padding bits in the last character) are
    refused so that every character of a sealed value is covered by a check.
    """
    if not _B64URL_RE.fullmatch(text) or len(text) % 4 == 1:
        return None
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    if _b64encode(data) != text:
        return None
    return data


def _derive_key_id(material: bytes) -> str:
    return hashlib.sha256(_KEY_ID_DOMAIN + material).digest()[:8].hex()


@dataclass(frozen=True)
class MasterKey:
    """A 256-bit key-encryption key (KEK) and its public identifier.

    ``key_id`` is derived from the material (first 8 bytes of
    SHA-256("bastion-kek-id" + key), as 16 hex characters); it identifies the
    key in sealed values and messages and reveals nothing useful about it.
    ``material`` never appears in ``repr``.

    Raises:
        MasterKeyError: ``material`` is not exactly 32 bytes.
    """

    key_id: str = field(init=False)
    material: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.material, bytes) or len(self.material) != _KEY_BYTES:
            raise MasterKeyError(f"a master key must be exactly {_KEY_BYTES} bytes")
        # frozen dataclass: the derived field is set once, here.
        object.__setattr__(self, "key_id", _derive_key_id(self.material))

    @classmethod
    def generate(cls) -> MasterKey:
        """Return a new random master key from the OS CSPRNG."""
        return cls(secrets.token_bytes(_KEY_BYTES))

    @classmethod
    def parse(cls, text: str) -> MasterKey:
        """Parse the text form ``bmk1:<base64url, no padding, 32 bytes>``.

        Surrounding whitespace is ignored.

        Raises:
            MasterKeyError: ``text`` is not a bastion master key (the message
                never repeats ``text``).
        """
        candidate = text.strip()
        material = None
        if candidate.startswith(_MASTER_KEY_PREFIX):
            material = _b64decode(candidate[len(_MASTER_KEY_PREFIX) :])
        if material is None or len(material) != _KEY_BYTES:
            raise MasterKeyError(
                "not a bastion master key (expected bmk1: followed by 43 base64url characters)"
            )
        return cls(material)

    def encode(self) -> str:
        """Return the text form ``bmk1:<base64url>`` (this IS the secret; handle with care)."""
        return _MASTER_KEY_PREFIX + _b64encode(self.material)


@dataclass(frozen=True)
class _Sealed:
    key_id: str
    wrapped_dek: bytes
    data: bytes
    data_text: str


def _parse_sealed(sealed: str) -> _Sealed:
    malformed = DecryptionError(
        "sealed value could not be decrypted: it is not in the "
        "bse1.<key id>.<wrapped key>.<data> format (truncated or corrupted)"
    )
    if not isinstance(sealed, str):
        raise malformed
    parts = sealed.split(".")
    if len(parts) != 4 or parts[0] != _SEALED_VERSION or not _KEY_ID_RE.fullmatch(parts[1]):
        raise malformed
    wrapped_dek = _b64decode(parts[2])
    data = _b64decode(parts[3])
    if wrapped_dek is None or len(wrapped_dek) != _WRAPPED_DEK_BYTES:
        raise malformed
    if data is None or len(data) < _NONCE_BYTES + _TAG_BYTES:
        raise malformed
    return _Sealed(key_id=parts[1], wrapped_dek=wrapped_dek, data=data, data_text=parts[3])


def _wrap_aad(key_id: str) -> bytes:
    return f"{_SEALED_VERSION}.{key_id}".encode("ascii")


class Keyring:
    """An ordered set of master keys: the first (primary) seals, all of them open.

    Raises:
        MasterKeyError: no keys were given, or a key appears twice.
    """

    __slots__ = ("_aead", "_keys")

    def __init__(self, keys: Sequence[MasterKey]) -> None:
        keys = tuple(keys)
        if not keys:
            raise MasterKeyError("a keyring needs at least one master key")
        aead: dict[str, AESGCM] = {}
        for key in keys:
            if key.key_id in aead:
                raise MasterKeyError(f"master key {key.key_id} is listed twice in the keyring")
            aead[key.key_id] = AESGCM(key.material)
        self._keys = keys
        self._aead = aead

    def __repr__(self) -> str:
        return f"Keyring(key_ids={self.key_ids!r})"

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[MasterKey]:
        return iter(self._keys)

    @property
    def primary(self) -> MasterKey:
        """The key that seals new values and re-wraps old ones."""
        return self._keys[0]

    @property
    def keys(self) -> tuple[MasterKey, ...]:
        """All keys, primary first."""
        return self._keys

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The ids of all keys, primary first."""
        return tuple(key.key_id for key in self._keys)

    def with_new_primary(self) -> Keyring:
        """Return a keyring with a freshly generated primary followed by every current key."""
        return Keyring((MasterKey.generate(), *self._keys))

    def only_primary(self) -> Keyring:
        """Return a keyring holding only the current primary key."""
        return Keyring((self.primary,))

    # -- sealing ---------------------------------------------------------

    def seal(self, plaintext: bytes, *, context: str) -> str:
        """Encrypt ``plaintext`` under a fresh data key wrapped with the primary key.

        ``context`` names where the value is stored (e.g.
        ``"signing_keys.private_key:<kid>"``); the same context must be given
        to :meth:`open`.

        Raises:
            ValueError: ``context`` is empty (a value must be bound to its place).
        """
        context_bytes = _context_bytes(context)
        dek = AESGCM.generate_key(bit_length=256)
        data_nonce = os.urandom(_NONCE_BYTES)
        data = data_nonce + AESGCM(dek).encrypt(data_nonce, plaintext, context_bytes)
        return self._assemble(dek, _b64encode(data))

    def open(self, sealed: str, *, context: str) -> bytes:
        """Decrypt a value produced by :meth:`seal` with the same ``context``.

        Raises:
            ValueError: ``context`` is empty.
            DecryptionError: the value is malformed, was sealed under a master
                key that is not loaded, was altered, or belongs to another context.
        """
        context_bytes = _context_bytes(context)
        parsed = _parse_sealed(sealed)
        dek = self._unwrap(parsed)
        nonce, ciphertext = parsed.data[:_NONCE_BYTES], parsed.data[_NONCE_BYTES:]
        try:
            return AESGCM(dek).decrypt(nonce, ciphertext, context_bytes)
        except InvalidTag:
            raise DecryptionError(
                f"sealed value for {context} could not be decrypted: it was altered "
                "or belongs to another record"
            ) from None

    def rewrap(self, sealed: str) -> str:
        """Re-wrap the data key of ``sealed`` under the primary key; the data part is unchanged.

        Needs neither the context nor the plaintext. A value already under the
        primary key is checked and returned unchanged.

        Raises:
            DecryptionError: the value is malformed, its master key is not
                loaded, or its wrapped data key was altered.
        """
        parsed = _parse_sealed(sealed)
        dek = self._unwrap(parsed)
        if parsed.key_id == self.primary.key_id:
            return sealed
        return self._assemble(dek, parsed.data_text)

    def key_id_of(self, sealed: str) -> str:
        """Return the id of the master key that wrapped ``sealed``'s data key.

        Raises:
            DecryptionError: the value is not a well-formed sealed value.
        """
        return _parse_sealed(sealed).key_id

    def needs_rewrap(self, sealed: str) -> bool:
        """Tell whether ``sealed`` is wrapped by a key other than the primary.

        Raises:
            DecryptionError: the value is not a well-formed sealed value.
        """
        return self.key_id_of(sealed) != self.primary.key_id

    # -- internals -------------------------------------------------------

    def _assemble(self, dek: bytes, data_text: str) -> str:
        primary = self.primary
        wrap_nonce = os.urandom(_NONCE_BYTES)
        wrapped = wrap_nonce + self._aead[primary.key_id].encrypt(
            wrap_nonce, dek, _wrap_aad(primary.key_id)
        )
        return f"{_SEALED_VERSION}.{primary.key_id}.{_b64encode(wrapped)}.{data_text}"

    def _unwrap(self, parsed: _Sealed) -> bytes:
        aead = self._aead.get(parsed.key_id)
        if aead is None:
            raise DecryptionError(
                f"sealed value could not be decrypted: master key {parsed.key_id} that sealed it "
                "is not loaded; add that key to the master key file after the primary key",
                key_id=parsed.key_id,
            )
        nonce, wrapped = parsed.wrapped_dek[:_NONCE_BYTES], parsed.wrapped_dek[_NONCE_BYTES:]
        try:
            return aead.decrypt(nonce, wrapped, _wrap_aad(parsed.key_id))
        except InvalidTag:
            raise DecryptionError(
                f"sealed value could not be decrypted: its data key (wrapped by master key "
                f"{parsed.key_id}) was altered"
            ) from None


def _context_bytes(context: str) -> bytes:
    if not context:
        raise ValueError("a sealed value needs a non-empty context naming where it is stored")
    return context.encode("utf-8")


# -- keyring files and variables ------------------------------------------


def parse_keyring_text(text: str, source: str) -> Keyring:
    """Parse master keys separated by newlines, commas or whitespace (e.g. from ``env:``).

    ``source`` names where the text came from, for error messages only.

    Raises:
        MasterKeyError: an item is not a master key, a key repeats, or there is none.
    """
    items = [item for item in re.split(r"[\s,]+", text) if item]
    if not items:
        raise MasterKeyError(f"{source} contains no master key; set it to one or more bmk1: keys")
    keys: list[MasterKey] = []
    for index, item in enumerate(items, start=1):
        try:
            keys.append(MasterKey.parse(item))
        except MasterKeyError:
            raise MasterKeyError(
                f"{source} is corrupt (item {index} is not a bastion master key{_hint(item)}); "
                "each key is bmk1: followed by 43 base64url characters — create one with "
                "`bastion secrets init-master-key PATH` and point secrets.master_key_file at it"
            ) from None
    return Keyring(keys)


def _hint(item: str) -> str:
    # Says what the value looks like, never what it is: the usual mistake is a key
    # made with `openssl rand`, which is random but not in bastion's format.
    if re.fullmatch(r"[0-9a-fA-F]{32,}", item):
        return ": it looks like hex, e.g. from `openssl rand -hex 32`"
    if re.fullmatch(r"[A-Za-z0-9+/]{40,}={0,2}", item):
        return ": it looks like plain base64, e.g. from `openssl rand -base64 32`"
    return ""


def _check_mode(path: Path, mode: int) -> None:
    if os.name != "posix":
        return
    if not stat.S_ISREG(mode):
        raise MasterKeyError(f"master key file {path} is not a regular file")
    if mode & 0o077:
        raise MasterKeyError(
            f"master key file {path} has mode {stat.S_IMODE(mode):04o}; run chmod 600 {path}"
        )


def load_keyring_file(path: Path) -> Keyring:
    """Read a keyring from a master key file (one ``bmk1:`` key per line, first = primary).

    Blank lines and lines starting with ``#`` are ignored. On POSIX the file
    must not be readable or writable by group or others.

    Raises:
        MasterKeyError: the file is missing, unreadable, too permissive,
            corrupt, empty, or lists a key twice.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise MasterKeyError(
            f"master key file {path} does not exist; check secrets.master_key_file, "
            f"create it with `bastion secrets init-master-key {path}` (a new installation) "
            "or restore the file from your backup"
        ) from None
    except OSError as exc:
        raise MasterKeyError(f"master key file {path} cannot be read ({exc.strerror})") from None
    try:
        # fstat the open descriptor: no window between the check and the read.
        _check_mode(path, os.fstat(fd).st_mode)
        with os.fdopen(fd, "rb", closefd=False) as handle:
            raw = handle.read()
    except OSError as exc:
        raise MasterKeyError(f"master key file {path} cannot be read ({exc.strerror})") from None
    finally:
        os.close(fd)
    # Undecodable bytes become U+FFFD, which then fails to parse on its own line.
    text = raw.decode("utf-8", errors="replace")
    keys: list[MasterKey] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            keys.append(MasterKey.parse(stripped))
        except MasterKeyError:
            raise MasterKeyError(
                f"master key file {path} is corrupt (line {number} is not a bastion master key"
                f"{_hint(stripped)}); a new installation creates its key file with "
                "`bastion secrets init-master-key PATH` — if secrets were already sealed under "
                "this file, restore it from your backup instead"
            ) from None
    if not keys:
        raise MasterKeyError(
            f"master key file {path} contains no master key; restore it from your backup"
        )
    try:
        return Keyring(keys)
    except MasterKeyError as exc:
        raise MasterKeyError(f"master key file {path}: {exc.detail}") from None


def _render(keys: Iterable[MasterKey]) -> bytes:
    return (_FILE_HEADER + "".join(key.encode() + "\n" for key in keys)).encode("ascii")


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_new(path: Path, content: bytes) -> None:
    """Create ``path`` (never overwriting) with mode 0600 and ``content``, durably."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        if os.name == "posix":
            # the umask could have removed bits we need; never added any.
            os.fchmod(fd, 0o600)
        write_durably(fd, content)
    finally:
        os.close(fd)


def create_keyring_file(path: Path) -> Keyring:
    """Create a new master key file holding one generated key (mode 0600, never overwrites).

    A missing parent directory is created with mode 0700.

    Raises:
        MasterKeyError: the file already exists or cannot be created.
    """
    path = Path(path)
    keyring = Keyring([MasterKey.generate()])
    parent = path.parent
    try:
        if not parent.exists():
            parent.mkdir(parents=True, mode=0o700)
            parent.chmod(0o700)
        _write_new(path, _render(keyring))
    except FileExistsError:
        raise MasterKeyError(
            f"master key file {path} already exists; refusing to overwrite it"
        ) from None
    except OSError as exc:
        raise MasterKeyError(f"master key file {path} cannot be created ({exc.strerror})") from None
    _fsync_dir(parent)
    return keyring


def write_keyring_file(path: Path, keyring: Keyring) -> None:
    """Atomically replace ``path`` with ``keyring`` (primary first), mode 0600.

    Writes a temporary file in the same directory, fsyncs it, renames it over
    ``path`` and fsyncs the directory: a crash leaves the old or the new file,
    never a partial one.

    Raises:
        MasterKeyError: the file cannot be written.
    """
    path = Path(path)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        _write_new(temp, _render(keyring))
        temp.replace(path)
        _fsync_dir(path.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise MasterKeyError(f"master key file {path} cannot be written ({exc.strerror})") from None
