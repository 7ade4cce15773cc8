"""The error types a user of fwdist can meet.

Every error a user can cause derives from :class:`FwdistError`; the CLI turns it
into one line on stderr and a non-zero exit. Modules raise the most specific
subclass so a caller can tell "your input is wrong" from "the store is damaged".
"""

from __future__ import annotations


class FwdistError(Exception):
    """Base class: a problem a user can fix; its message is one line."""


class ManifestError(FwdistError):
    """A manifest is malformed, unsigned, signed by an unknown key, or tampered."""


class StoreError(FwdistError):
    """The store is missing something, holds a damaged object, or cannot be written."""


class StagingError(FwdistError):
    """An image or release cannot be staged (empty, not newer, unknown source...)."""


class KeyFileError(FwdistError):
    """A key file is missing, unreadable or not an Ed25519 key."""


class PlanError(FwdistError):
    """A plan asks for what no box does: a downgrade, or the version the box already runs."""


class TrustError(FwdistError):
    """Trust metadata (a root or a timestamp) is malformed, under-signed, stale or expired."""
