"""Operator tools over the model: one module per ``maglevx`` subcommand.

- :mod:`maglevx.tools.table`: who holds which slots, and why (``table``).
- :mod:`maglevx.tools.diff`: what moves between two configurations (``diff``).
- :mod:`maglevx.tools.consistency`: do several directors agree (``consistency``).
- :mod:`maglevx.tools.verify`: does a live director do what we predict (``verify``).
- :mod:`maglevx.tools.explain`: every step of one decision (``explain``).

Shared pieces: :mod:`maglevx.tools.sources` (reading configurations, with
per-input director parameters), :mod:`maglevx.tools.sample` (flow samples),
:mod:`maglevx.tools.text` (human-readable tables) and
:mod:`maglevx.tools.plot` (``--plot``, needs the ``plot`` extra).
"""
