"""The fleet server: releases over HTTP, a registry of boxes, and the reports phones carry back.

One idea per module: ``db`` (tables and engines), ``migrate`` (Alembic, run at start),
``auth`` (scoped tokens, stored hashed), ``http`` (cache headers, ETag, Range),
``objects`` (the static-compatible paths a CDN could serve), ``pack`` (all of a payload's
objects in one rangeable response), ``publish`` (a release re-verified before it is visible),
``reports`` (signed box reports ingested idempotently), ``api`` (the JSON routes under
``/v1``), ``openapi`` (their document), ``app`` (the ASGI application), ``process`` (the
``fwdist server`` process on Hypercorn's trio worker). docs/fleet-api.md is the contract.
"""
