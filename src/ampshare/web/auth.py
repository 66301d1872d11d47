"""Bearer-token auth with roles. Only SHA-256 hashes of tokens are configured or kept.

Roles, each including the one before: ``read`` (every GET), ``driver`` (also a session's
departure and energy), ``admin`` (also priority, policy, limits, alerts).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum

from ampshare.config.sections import WebSection

__all__ = ["Role", "TokenAuth", "hash_token", "new_token"]


class Role(IntEnum):
    READ = 1
    DRIVER = 2
    ADMIN = 3

    @classmethod
    def parse(cls, name: str) -> Role:
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(f"unknown role {name!r}; use read, driver or admin") from None


def hash_token(token: str) -> str:
    """The form a token is stored in (``sha256:<hex>``)."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(24)


@dataclass(frozen=True, slots=True)
class TokenAuth:
    """Maps token hashes to roles; ``role_of`` compares in constant time per entry."""

    hashes: Mapping[str, Role]

    @classmethod
    def from_tokens(cls, tokens: Mapping[str, Role]) -> TokenAuth:
        """Build from plain tokens (tests, the demo); they are hashed at once."""
        return cls({hash_token(t): r for t, r in tokens.items()})

    @classmethod
    def from_section(cls, section: WebSection) -> TokenAuth:
        """From the site file's ``web.tokens`` (hashes only ever reach the process)."""
        return cls({t.sha256: Role.parse(t.role) for t in section.tokens})

    def role_of(self, token: str | None) -> Role | None:
        if not token:
            return None
        digest = hash_token(token)
        found: Role | None = None
        for h, role in self.hashes.items():
            if hmac.compare_digest(h, digest):
                found = role
        return found
