"""Identifiers: CUID2, as the specification's `VARCHAR(24)` ids expect."""

from __future__ import annotations

from cuid2 import Cuid

new_id = Cuid(length=24).generate
short_id = Cuid(length=8).generate
