"""Errors of the storage package: the durable database and the shared ephemeral state."""

from __future__ import annotations

from bastion.errors import BastionError, ServiceUnavailableError


class StorageError(BastionError):
    """Root of every storage error."""

    code = "storage_error"
    status = 500
    title = "Storage error"


class NotFoundError(StorageError):
    """The record asked for does not exist."""

    code = "not_found"
    status = 404
    title = "Not found"


class ConflictError(StorageError):
    """The write would break a uniqueness rule (the record already exists)."""

    code = "conflict"
    status = 409
    title = "Conflict"


class DatabaseUnavailableError(ServiceUnavailableError, StorageError):
    """The SQL database cannot be reached or refused the operation for a transient reason."""

    code = "database_unavailable"
    status = 503
    title = "Database unavailable"


class SharedStateUnavailableError(ServiceUnavailableError, StorageError):
    """The shared ephemeral state (Redis) cannot be reached."""

    code = "shared_state_unavailable"
    status = 503
    title = "Shared state unavailable"


class ChangeFeedStaleError(ServiceUnavailableError, StorageError):
    """This node has not read the change feed recently: others' changes may be unheard of."""

    code = "change_feed_stale"
    status = 503
    title = "Change feed not followed"


class MigrationError(StorageError):
    """The database schema cannot be brought to the version this bastion needs."""

    code = "migration_error"
    status = 500
    title = "Migration error"
