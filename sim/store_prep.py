"""Getting a user's store ready for a simulation: which versions the fleet runs.

A scenario names the versions its fleet runs (``release.running``). With the
built-in sample they exist by construction; with ``--store`` they might not, and
then the fleet runs what the target release has deltas from (equal shares),
which is the release engineer's own statement of what is out there.
"""

from __future__ import annotations

from pathlib import Path

from fwdist.errors import FwdistError
from fwdist.releases import load_manifest
from fwdist.store import Store


def running_versions(
    store_dir: Path, product: str, target: str, wanted: dict[str, float]
) -> tuple[dict[str, float], str | None]:
    store = Store.open(store_dir)
    try:
        m = load_manifest(store, product, target)
    except FwdistError:
        raise FwdistError(f"no release {product}@{target} in {store_dir}") from None
    staged = {v for p, v in store.releases(product) if p == product}
    if all(v in staged for v in wanted):
        return dict(wanted), None
    sources = [ref.source_version for ref in m.deltas if ref.source_version in staged]
    if not sources:
        older = sorted(
            (v for v in staged if v != target), key=lambda v: tuple(map(int, v.split(".")))
        )
        if not older:
            raise FwdistError(
                f"{store_dir} holds no release of {product} older than {target} "
                "for the fleet to run"
            )
        sources = [older[-1]]
    share = 1.0 / len(sources)
    return (
        {str(v): share for v in sources},
        f"the scenario's running versions {sorted(wanted)} are not all in {store_dir}; "
        f"the fleet runs {', '.join(str(s) for s in sources)} instead",
    )
