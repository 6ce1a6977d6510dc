"""Timestamps: one format for every file the project writes (UTC, ISO 8601, to the second)."""

from __future__ import annotations

import datetime as dt


def now_iso() -> str:
    """Now, as `2026-12-02T09:31:56+00:00`."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def iso(epoch_seconds: float) -> str:
    """A time.time() value in the same format."""
    return dt.datetime.fromtimestamp(epoch_seconds, dt.UTC).isoformat(timespec="seconds")


def today_local() -> str:
    """The local date (`2026-12-02`): the name of a day's log file, as its reader's clock shows it."""
    return dt.datetime.now().strftime("%Y-%m-%d")
