"""The one error hierarchy every consumer's ack policy is built on.

- ``TransientError``: the world may look different later (broker or database
  unreachable); the message is retried a bounded number of times.
- ``PermanentError``: retrying cannot help; the message is dead-lettered.
- ``ContractError``: the message cannot be decoded or validated; dead-lettered.

Adapters translate driver exceptions into these with ``raise ... from exc`` so
handlers never see aiormq or pymongo types.
"""

from __future__ import annotations


class SidebarError(Exception):
    """Base of every error the services raise on purpose."""


class TransientError(SidebarError):
    """A dependency failed in a way that may succeed on retry."""


class PermanentError(SidebarError):
    """The message is well formed but can never be processed."""


class ContractError(PermanentError):
    """The message is not a valid instance of its contract."""
