"""Charger passwords (OCPP security profile 1): stored only as salted PBKDF2 hashes.

Format: ``pbkdf2_sha256$<iterations>$<salt b64>$<hash b64>`` — self-describing, so the
iteration count can be raised later without invalidating stored hashes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from ampshare.errors import ConfigError, ConfigIssue

__all__ = ["hash_password", "verify_password"]

_ALGO = "pbkdf2_sha256"
_ITERATIONS = 120_000


def hash_password(password: str, *, iterations: int = _ITERATIONS,
                  salt: bytes | None = None) -> str:
    """A storable hash of ``password`` (put it in ``ocpp.password_hashes``)."""
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    b64 = base64.b64encode
    return f"{_ALGO}${iterations}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored``; raises ``ConfigError`` for a bad hash."""
    try:
        algo, iters, salt_b64, hash_b64 = stored.split("$")
        if algo != _ALGO:
            raise ValueError(algo)
        salt = base64.b64decode(salt_b64, validate=True)
        expected = base64.b64decode(hash_b64, validate=True)
        iterations = int(iters)
    except ValueError as e:
        raise ConfigError([ConfigIssue(
            file="<config>", path="ocpp.password_hashes", message="not a password hash",
            hint="make one with `ampshare ocpp-hash-password`")]) from e
    got = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return hmac.compare_digest(got, expected)
