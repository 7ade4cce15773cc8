"""The fleet's routes: boxes, reports, the summary, and what a phone syncs."""

from __future__ import annotations

from starlette.routing import BaseRoute


def routes() -> list[BaseRoute]:
    return []
