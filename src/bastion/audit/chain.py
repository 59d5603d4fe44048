"""The audit log's hash chains: canonical encoding, chaining, and verification.

Each node (``node_id``) writes its own chain. Record ``seq`` (1, 2, 3 …)
carries ``prev_hash`` — the ``hash`` of record ``seq - 1`` (:data:`GENESIS`
for the first) — and its own ``hash``, the SHA-256 (hex) of its
:func:`canonical` encoding: compact JSON with sorted keys of every member
(``node_id``, ``seq``, ``prev_hash`` included; ``id`` and ``hash`` excluded),
the time as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``, and a format version ``v``.

Pruning (retention) deletes a prefix of a chain and stores an
:class:`~bastion.storage.AuditCheckpoint` — the ``seq`` and ``hash`` of the
last deleted record — from which the remaining chain continues. Each
checkpoint carries a ``mac``: HMAC-SHA256 of :func:`checkpoint_bytes` under a
key derived from the master key (``crypto/macs.py``, purpose
:data:`CHECKPOINT_PURPOSE`), so write access to the database alone cannot
forge an anchor.

:func:`verify` first checks every checkpoint's MAC — one without a valid MAC
is reported as **unauthenticated** and never used as an anchor — then walks
every stored record of each chain, from the authentic checkpoint just below
the first stored record (or the genesis); a record still stored at an
authentic checkpoint's ``seq`` must be the one it anchored. Per record it
reports the first thing wrong:

- **modified** — the record's hash does not match its content, or it does
  but no longer links to its successor (rewritten with a recomputed hash);
- **deleted** — a ``seq`` is missing (a gap, or records missing after the
  anchor), or another node's periodic ``audit.checkpoint`` saw a head that is
  gone (a truncated tail, or a whole node's chain);
- **reordered** — an authentic record sits at another ``seq`` than it was
  written with, or append order (``id``) disagrees with chain order;
- **unauthenticated** — a checkpoint without a valid MAC: forged, altered,
  signed under a master key that is not loaded, or (``missing``) written
  before bastion signed checkpoints. :func:`reanchor` signs the last kind
  after a verification that trusts them finds nothing else wrong
  (``bastion audit verify --reanchor``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final, Literal

import orjson

from bastion.audit.events import Event, EventTypes, text_members
from bastion.crypto import InvalidMacError, Keyring, RecordAuthenticator
from bastion.crypto.digests import sha256_hex
from bastion.errors import BastionError
from bastion.storage import AuditCheckpoint, AuditEvent, AuditRepository

__all__ = [
    "CHAIN_VERSION",
    "CHECKPOINT_PURPOSE",
    "GENESIS",
    "AuditChainBrokenError",
    "ChainHead",
    "Finding",
    "NodeSummary",
    "VerifyReport",
    "canonical",
    "chain_events",
    "checkpoint_authenticator",
    "checkpoint_bytes",
    "checkpoint_signer",
    "compute_hash",
    "inspect",
    "reanchor",
    "rechain",
    "resign_checkpoints",
    "timestamp",
    "verify",
]

CHAIN_VERSION: Final = 1
GENESIS: Final = "0" * 64
"""The ``prev_hash`` of a chain's first record."""

# How far from its position an authentic record is searched for (reorder detection).
REORDER_WINDOW: Final = 256
MAX_FINDINGS_PER_NODE: Final = 100

CHECKPOINT_PURPOSE: Final = "audit-checkpoint"
"""The purpose label of the key (derived from the master key) that signs checkpoints."""

FindingKind = Literal["modified", "deleted", "reordered", "unauthenticated"]


def timestamp(moment: datetime) -> str:
    """``moment`` as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC), the form the hash covers."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def chained_fields(event: AuditEvent) -> dict[str, Any]:
    """Every member of ``event`` the hash covers, as JSON types (not ``id``, not ``hash``)."""
    return {
        "node_id": event.node_id,
        "seq": event.seq,
        "occurred_at": timestamp(event.occurred_at),
        **text_members(event),
        "data": event.data,
        "prev_hash": event.prev_hash,
    }


def canonical(event: AuditEvent) -> bytes:
    """The bytes the hash of ``event`` covers (everything but ``id`` and ``hash``)."""
    doc = {"v": CHAIN_VERSION, **chained_fields(event)}
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def compute_hash(event: AuditEvent) -> str:
    """The SHA-256 (hex) of :func:`canonical` ``(event)``."""
    return sha256_hex(canonical(event))


def checkpoint_bytes(checkpoint: AuditCheckpoint) -> bytes:
    """The bytes a checkpoint's ``mac`` covers: node, seq, hash, time and pruned count."""
    doc = {
        "v": CHAIN_VERSION,
        "node_id": checkpoint.node_id,
        "seq": checkpoint.seq,
        "hash": checkpoint.hash,
        "occurred_at": timestamp(checkpoint.occurred_at),
        "pruned": checkpoint.pruned,
    }
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def checkpoint_authenticator(keyring: Keyring) -> RecordAuthenticator:
    """What signs (primary master key) and verifies (every loaded key) checkpoint MACs."""
    return RecordAuthenticator(keyring, CHECKPOINT_PURPOSE)


def checkpoint_signer(keyring: Keyring) -> Callable[[AuditCheckpoint], str]:
    """``sign(checkpoint) -> mac`` for :meth:`AuditRepository.prune_before`."""
    authenticator = checkpoint_authenticator(keyring)
    return lambda checkpoint: authenticator.sign(checkpoint_bytes(checkpoint))


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The end of a node's chain: the last ``seq`` and its ``hash`` (0 / GENESIS: empty)."""

    seq: int = 0
    hash: str = GENESIS


def chain_events(node_id: str, head: ChainHead, events: Sequence[Event]) -> list[AuditEvent]:
    """Turn ``events`` into the next records of ``node_id``'s chain after ``head``."""
    records: list[AuditEvent] = []
    seq, prev = head.seq, head.hash
    for event in events:
        seq += 1
        record = AuditEvent(
            node_id=node_id,
            seq=seq,
            occurred_at=event.occurred_at,
            **text_members(event),
            data=dict(event.data),
            prev_hash=prev,
        )
        prev = compute_hash(record)
        records.append(replace(record, hash=prev))
    return records


def rechain(node_id: str, head: ChainHead, records: Sequence[AuditEvent]) -> list[AuditEvent]:
    """``records`` chained again after ``head`` (new ``seq``, ``prev_hash`` and ``hash``)."""
    out: list[AuditEvent] = []
    seq, prev = head.seq, head.hash
    for record in records:
        seq += 1
        moved = replace(record, node_id=node_id, seq=seq, prev_hash=prev, hash="", id=None)
        prev = compute_hash(moved)
        out.append(replace(moved, hash=prev))
    return out


# -- verification ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Finding:
    """One place where a chain is broken."""

    node_id: str
    kind: FindingKind
    seq: int
    id: int | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "kind": self.kind,
            "seq": self.seq,
            "id": self.id,
            "detail": self.detail,
        }

    def __str__(self) -> str:
        where = f"node {self.node_id} seq {self.seq}"
        if self.id is not None:
            where += f" (id {self.id})"
        return f"{self.kind}: {where}: {self.detail}"


@dataclass(slots=True)
class NodeSummary:
    """What :func:`inspect` saw of one node's chain."""

    node_id: str
    records: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    anchor_seq: int = 0
    head_hash: str = GENESIS

    def to_dict(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "records": self.records,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "anchor_seq": self.anchor_seq,
        }


@dataclass(slots=True)
class VerifyReport:
    """The result of checking every chain."""

    nodes: list[NodeSummary] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.findings

    @property
    def records(self) -> int:
        return sum(node.records for node in self.nodes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "intact": self.intact,
            "records": self.records,
            "nodes": [node.to_dict() for node in self.nodes],
            "findings": [finding.to_dict() for finding in self.findings],
        }


class AuditChainBrokenError(BastionError):
    """The stored audit log fails verification; ``report.findings`` says where and how."""

    code = "audit_chain_broken"
    status = 409
    title = "Audit log tampered with"

    def __init__(self, report: VerifyReport) -> None:
        self.report = report
        first = report.findings[0]
        more = len(report.findings) - 1
        suffix = f" (and {more} more finding{'s' if more != 1 else ''})" if more else ""
        super().__init__(f"{first}{suffix}")


def _original_seq(record: AuditEvent) -> int | None:
    """The seq near its position that ``record``'s hash was computed with, if any."""
    for delta in range(1, REORDER_WINDOW + 1):
        for seq in (record.seq - delta, record.seq + delta):
            if seq >= 1 and compute_hash(replace(record, seq=seq)) == record.hash:
                return seq
    return None


@dataclass(slots=True)
class _Walk:
    node: NodeSummary
    expected_seq: int
    prev_hash: str
    prev_id: int | None = None
    prev_flagged: bool = False
    findings: list[Finding] = field(default_factory=list)
    latest_checkpoint: AuditEvent | None = None
    # Authentic checkpoints above the starting anchor: a record still stored at one of
    # these seqs must be the record it anchored.
    anchored: dict[int, AuditCheckpoint] = field(default_factory=dict)

    def report(self, kind: FindingKind, seq: int, record_id: int | None, detail: str) -> None:
        if len(self.findings) < MAX_FINDINGS_PER_NODE:
            self.findings.append(Finding(self.node.node_id, kind, seq, record_id, detail))

    def check(self, record: AuditEvent) -> None:
        before = len(self.findings)
        self._check(record)
        if record.type == EventTypes.CHECKPOINT:
            self.latest_checkpoint = record
        node = self.node
        node.records += 1
        if node.first_seq is None:
            node.first_seq = record.seq
        node.last_seq = record.seq
        node.head_hash = record.hash
        self.expected_seq = record.seq + 1
        self.prev_hash = record.hash
        self.prev_id = record.id
        self.prev_flagged = len(self.findings) > before

    def _check(self, record: AuditEvent) -> None:
        """Report the first thing wrong with ``record`` (at most one finding per record)."""
        if compute_hash(record) != record.hash:
            original = _original_seq(record)
            if original is not None:
                self.report(
                    "reordered",
                    record.seq,
                    record.id,
                    f"this record was written as seq {original}",
                )
            else:
                self.report(
                    "modified",
                    record.seq,
                    record.id,
                    "the record's content does not match its hash",
                )
            return
        if record.seq != self.expected_seq:
            first, last = self.expected_seq, record.seq - 1
            span = f"seq {first}" if first == last else f"seq {first} to {last}"
            after = (
                f"the chain jumps from seq {first - 1} to seq {record.seq}"
                if self.node.records
                else f"the chain should continue at seq {first} but starts at seq {record.seq}"
            )
            self.report("deleted", first, None, f"{span} missing ({after}, id {record.id})")
            return
        if record.prev_hash != self.prev_hash and not self.prev_flagged:
            # (After a flagged record the broken link is that finding, not a new one.)
            if self.node.records == 0:
                self.report(
                    "deleted",
                    record.seq,
                    record.id,
                    "the record does not continue the chain's anchor (its checkpoint is missing "
                    "or was altered)",
                )
            else:
                self.report(
                    "modified",
                    record.seq - 1,
                    self.prev_id,
                    f"the record was rewritten: its hash is not the prev_hash of seq {record.seq}",
                )
            return
        if record.id is not None and self.prev_id is not None and record.id < self.prev_id:
            self.report(
                "reordered",
                record.seq,
                record.id,
                f"stored before seq {record.seq - 1} (id {record.id} < id {self.prev_id})",
            )
            return
        anchor = self.anchored.get(record.seq)
        if anchor is not None and anchor.hash != record.hash:
            self.report(
                "modified",
                record.seq,
                record.id,
                f"the record was changed after checkpoint {anchor.id} anchored it",
            )


_MAC_PROBLEMS: Final = {
    "missing": "it has no MAC (written before bastion signed checkpoints: check the log, then "
    "run `bastion audit verify --reanchor`)",
    "malformed": "its MAC is malformed",
    "unknown_key": "its MAC was made under a master key that is not loaded",
    "mismatch": "its MAC does not match (forged, or altered after it was written)",
}


def _authentic_checkpoints(
    node_id: str,
    checkpoints: Sequence[AuditCheckpoint],
    authenticator: RecordAuthenticator,
    *,
    trust_unsigned: bool,
) -> tuple[list[AuditCheckpoint], list[Finding]]:
    """The checkpoints whose MAC verifies (oldest first), and a finding for each other one."""
    authentic: list[AuditCheckpoint] = []
    findings: list[Finding] = []
    for checkpoint in checkpoints:
        try:
            authenticator.verify(checkpoint.mac, checkpoint_bytes(checkpoint))
        except InvalidMacError as error:
            if trust_unsigned and error.reason == "missing":
                authentic.append(checkpoint)
                continue
            findings.append(
                Finding(
                    node_id,
                    "unauthenticated",
                    checkpoint.seq,
                    None,
                    f"checkpoint {checkpoint.id} is not used as an anchor: "
                    f"{_MAC_PROBLEMS.get(error.reason, error.detail)}",
                )
            )
            continue
        authentic.append(checkpoint)
    return authentic, findings


async def _walk_node(
    repo: AuditRepository,
    node_id: str,
    page_size: int,
    authenticator: RecordAuthenticator,
    trust_unsigned: bool,
) -> tuple[_Walk, AuditCheckpoint | None]:
    authentic, problems = _authentic_checkpoints(
        node_id, await repo.checkpoints(node_id), authenticator, trust_unsigned=trust_unsigned
    )
    first = await repo.chain(node_id, after_seq=-1, limit=1)
    # The walk starts at the authentic checkpoint just below the first stored record
    # (records at or below later checkpoints are still checked against them).
    start: AuditCheckpoint | None = None
    for checkpoint in authentic:
        if not first or checkpoint.seq < first[0].seq:
            start = checkpoint
    latest = authentic[-1] if authentic else None
    summary = NodeSummary(node_id)
    if latest is not None:
        summary.anchor_seq = latest.seq
        summary.head_hash = latest.hash
    walk = _Walk(
        summary,
        expected_seq=start.seq + 1 if start is not None else 1,
        prev_hash=start.hash if start is not None else GENESIS,
        findings=problems,
        anchored={c.seq: c for c in authentic if start is None or c.seq > start.seq},
    )
    after = -1
    while True:
        page = await repo.chain(node_id, after_seq=after, limit=page_size)
        for record in page:
            walk.check(record)
        if len(page) < page_size:
            break
        after = page[-1].seq
    last = summary.last_seq
    if latest is not None and last is not None and latest.seq > last:
        # Pruning deletes every record up to its checkpoint: records below one, and none
        # after it, means the records it anchored were removed since.
        walk.report(
            "deleted",
            last + 1,
            None,
            f"seq {last + 1} to {latest.seq} missing (checkpoint {latest.id} anchored seq "
            f"{latest.seq}, but the chain ends at seq {last})",
        )
    return walk, latest


async def _cross_check(
    repo: AuditRepository,
    walks: dict[str, tuple[_Walk, AuditCheckpoint | None]],
) -> list[Finding]:
    """Check the heads each node's latest ``audit.checkpoint`` saw of the other nodes."""
    findings: list[Finding] = []
    for node_id, (walk, _) in sorted(walks.items()):
        checkpoint = walk.latest_checkpoint
        if checkpoint is None:
            continue
        heads = checkpoint.data.get("heads")
        if not isinstance(heads, dict):
            continue
        for other, head in sorted(heads.items()):
            if other == node_id or not isinstance(head, dict):
                continue
            seq, digest = head.get("seq"), head.get("hash")
            if not isinstance(seq, int) or not isinstance(digest, str) or seq < 1:
                continue
            seen = f"node {node_id}'s checkpoint (seq {checkpoint.seq}) saw seq {seq} of {other}"
            if other not in walks:
                findings.append(
                    Finding(other, "deleted", seq, None, f"{seen}, but the node has no records")
                )
                continue
            other_walk, anchor = walks[other]
            if anchor is not None and seq <= anchor.seq:
                if seq == anchor.seq and digest != anchor.hash:
                    findings.append(
                        Finding(other, "modified", seq, None, f"{seen} with another hash")
                    )
                continue
            last = other_walk.node.last_seq or other_walk.node.anchor_seq
            if seq > last:
                findings.append(
                    Finding(
                        other,
                        "deleted",
                        last + 1,
                        None,
                        f"{seen}, but the chain ends at seq {last} (records removed from its end)",
                    )
                )
                continue
            stored = await repo.chain(other, after_seq=seq - 1, limit=1)
            if stored and stored[0].seq == seq and stored[0].hash != digest:
                findings.append(
                    Finding(other, "modified", seq, stored[0].id, f"{seen} with another hash")
                )
    return findings


async def inspect(
    repo: AuditRepository,
    *,
    authenticator: RecordAuthenticator,
    node_id: str | None = None,
    page_size: int = 1000,
    trust_unsigned: bool = False,
) -> VerifyReport:
    """Walk every node's chain (or ``node_id``'s) and report what is wrong, without raising.

    ``authenticator`` (:func:`checkpoint_authenticator`) checks checkpoint MACs;
    ``trust_unsigned`` accepts checkpoints without one as anchors (only for
    :func:`reanchor`).
    """
    nodes = (node_id,) if node_id is not None else await repo.nodes()
    walks = {
        node: await _walk_node(repo, node, page_size, authenticator, trust_unsigned)
        for node in nodes
    }
    report = VerifyReport()
    for node in nodes:
        walk, _ = walks[node]
        report.nodes.append(walk.node)
        report.findings.extend(walk.findings)
    if node_id is None:
        report.findings.extend(await _cross_check(repo, walks))
    return report


async def verify(
    repo: AuditRepository,
    *,
    authenticator: RecordAuthenticator,
    node_id: str | None = None,
    page_size: int = 1000,
) -> VerifyReport:
    """Verify every chain; returns the report when intact.

    Raises :class:`AuditChainBrokenError` (carrying the report) naming, for
    each finding, the node, the ``seq``/``id`` and whether the log was
    modified, had records deleted, reordered, or a checkpoint is unauthenticated.
    """
    report = await inspect(repo, authenticator=authenticator, node_id=node_id, page_size=page_size)
    if not report.intact:
        raise AuditChainBrokenError(report)
    return report


async def reanchor(
    repo: AuditRepository, *, authenticator: RecordAuthenticator, page_size: int = 1000
) -> tuple[VerifyReport, int]:
    """Sign the checkpoints that have no MAC, if everything else verifies.

    Verifies every chain trusting unsigned checkpoints (those written before
    bastion signed them); only when that finds nothing wrong are they signed.
    A checkpoint with a wrong MAC is never re-signed. Returns the report and how
    many checkpoints were signed (0 when the report is not intact).
    """
    report = await inspect(
        repo, authenticator=authenticator, page_size=page_size, trust_unsigned=True
    )
    if not report.intact:
        return report, 0
    signed = 0
    for node in await repo.nodes():
        for checkpoint in await repo.checkpoints(node):
            if checkpoint.mac is None and checkpoint.id is not None:
                mac = authenticator.sign(checkpoint_bytes(checkpoint))
                await repo.set_checkpoint_mac(checkpoint.id, mac)
                signed += 1
    return report, signed


async def resign_checkpoints(repo: AuditRepository, authenticator: RecordAuthenticator) -> int:
    """Sign again, under the primary master key, every valid checkpoint MAC made under
    another loaded key (master-key rotation); returns how many. Invalid ones stay as
    they are (verification keeps reporting them)."""
    count = 0
    for node in await repo.nodes():
        for checkpoint in await repo.checkpoints(node):
            if checkpoint.mac is None or checkpoint.id is None:
                continue
            data = checkpoint_bytes(checkpoint)
            try:
                authenticator.verify(checkpoint.mac, data)
            except InvalidMacError:
                continue
            if authenticator.needs_resign(checkpoint.mac):
                await repo.set_checkpoint_mac(checkpoint.id, authenticator.sign(data))
                count += 1
    return count
