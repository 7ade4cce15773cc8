"""fwdist: passive firmware update distribution for Bluetooth lockboxes.

The public surface is re-exported here; the modules behind it are the
implementation (see DESIGN.md for what each owns).
"""

from fwdist.app import App, PhoneCache, SessionReport
from fwdist.chunker import ChunkerParams, chunk_bytes, chunk_stream, piece_id
from fwdist.errors import FwdistError, KeyFileError, ManifestError, StagingError, StoreError
from fwdist.manifest import Manifest, PayloadRef, PieceTable, Version
from fwdist.releases import Plan, gc, load_manifest, plan, release_image, verify_store
from fwdist.staging import StageOptions, StageResult, stage
from fwdist.store import Store

__version__ = "0.1.0"

__all__ = [
    "App",
    "ChunkerParams",
    "FwdistError",
    "KeyFileError",
    "Manifest",
    "ManifestError",
    "PayloadRef",
    "PhoneCache",
    "PieceTable",
    "Plan",
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
    "piece_id",
    "plan",
    "release_image",
    "stage",
    "verify_store",
]
