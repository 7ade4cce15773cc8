"""fwdist: passive firmware update distribution for Bluetooth lockboxes.

The public surface is re-exported here, as trio does: ``from fwdist import
Lockbox, App, pump_session, stage, Store, ...``. A few modules are public
namespaces of their own (``fwdist.protocol``, ``fwdist.manifest``,
``fwdist.lockbox``, ``fwdist.delta``, ``fwdist.pump``, ``fwdist.trio_link``,
``fwdist.keys``, ``fwdist.sample``, ``fwdist.testing``, ``fwdist.errors``); the
others are internal and may move, and ``_name`` modules are private to their
package. docs/architecture.md ("The public surface") lists each module, what
it owns and which may do I/O.
"""

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fwdist.app import App, FrameCache, PhoneCache, SessionEnd, SessionReport
    from fwdist.chunker import ChunkerParams, chunk_bytes, chunk_stream, piece_id
    from fwdist.errors import FwdistError, KeyFileError, ManifestError, StagingError, StoreError
    from fwdist.flash import FileFlash, Flash, FlashError, PowerCut
    from fwdist.lockbox import BoxConfig, IdleStep, Lockbox, LockboxError
    from fwdist.manifest import Manifest, PayloadRef, PieceTable, Version
    from fwdist.protocol import LocalProtocolError, ProtocolError, RemoteProtocolError
    from fwdist.pump import BoxEndpoint, Pump, pump_session
    from fwdist.releases import (
        Plan,
        gc,
        load_manifest,
        phone_cache,
        plan,
        release_image,
        verify_store,
    )
    from fwdist.staging import StageOptions, StageResult, stage
    from fwdist.store import Store

# Where each public name lives: ``fwdist.App`` imports fwdist.app on first use (PEP 562), so
# ``import fwdist.cli`` for one command (``fwdist stage``) does not pay for the phone, the
# box, the server and trio. tests/unit/test_docs.py holds this table to the imports above.
_LAZY: dict[str, tuple[str, ...]] = {
    "fwdist.app": ("App", "FrameCache", "PhoneCache", "SessionEnd", "SessionReport"),
    "fwdist.chunker": ("ChunkerParams", "chunk_bytes", "chunk_stream", "piece_id"),
    "fwdist.errors": ("FwdistError", "KeyFileError", "ManifestError", "StagingError", "StoreError"),
    "fwdist.flash": ("FileFlash", "Flash", "FlashError", "PowerCut"),
    "fwdist.lockbox": ("BoxConfig", "IdleStep", "Lockbox", "LockboxError"),
    "fwdist.manifest": ("Manifest", "PayloadRef", "PieceTable", "Version"),
    "fwdist.protocol": ("LocalProtocolError", "ProtocolError", "RemoteProtocolError"),
    "fwdist.pump": ("BoxEndpoint", "Pump", "pump_session"),
    "fwdist.releases": (
        "Plan",
        "gc",
        "load_manifest",
        "phone_cache",
        "plan",
        "release_image",
        "verify_store",
    ),
    "fwdist.staging": ("StageOptions", "StageResult", "stage"),
    "fwdist.store": ("Store",),
}
_HOME = {name: module for module, names in _LAZY.items() for name in names}

__version__ = "0.1.0"

__all__ = [
    "App",
    "BoxConfig",
    "BoxEndpoint",
    "ChunkerParams",
    "FileFlash",
    "Flash",
    "FlashError",
    "FrameCache",
    "FwdistError",
    "IdleStep",
    "KeyFileError",
    "LocalProtocolError",
    "Lockbox",
    "LockboxError",
    "Manifest",
    "ManifestError",
    "PayloadRef",
    "PhoneCache",
    "PieceTable",
    "Plan",
    "PowerCut",
    "ProtocolError",
    "Pump",
    "RemoteProtocolError",
    "SessionEnd",
    "SessionReport",
    "StageOptions",
    "StageResult",
    "StagingError",
    "Store",
    "StoreError",
    "Version",
    "chunk_bytes",
    "chunk_stream",
    "gc",
    "load_manifest",
    "phone_cache",
    "piece_id",
    "plan",
    "pump_session",
    "release_image",
    "stage",
    "verify_store",
]


def __getattr__(name: str) -> object:
    """Import a public name's module the first time the name is asked for."""
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'fwdist' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
