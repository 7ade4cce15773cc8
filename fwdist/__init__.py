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
