"""Encryption at rest for secret variable values (Fernet: AES-128-CBC with HMAC-SHA256).

The key comes from OVERSEER_SECRET_KEY, or else from a key file generated on first use with
mode 0600 beside the embedded database.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from ..errors import UserError


class SecretBox:
    """Encrypts and decrypts a mapping of variable name to secret value."""

    def __init__(self, key: bytes) -> None:
        try:
            self._fernet = Fernet(key)
        except ValueError:
            raise UserError(
                "OVERSEER_SECRET_KEY is not a Fernet key (32 url-safe base64-encoded bytes); "
                "generate one with `python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`"
            ) from None

    @classmethod
    def from_config(cls, key: str | None, key_file: Path) -> SecretBox:
        """Use the configured key, else the key file, creating it (mode 0600) if absent."""
        if key:
            return cls(key.encode())
        try:
            return cls(key_file.read_bytes().strip())
        except FileNotFoundError:
            pass
        key_file.parent.mkdir(parents=True, exist_ok=True)
        new_key = Fernet.generate_key()
        # O_EXCL: two first runs racing must not end up with two different keys.
        try:
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return cls(key_file.read_bytes().strip())
        with os.fdopen(fd, "wb") as fh:
            fh.write(new_key + b"\n")
        return cls(new_key)

    def seal(self, values: dict[str, str]) -> bytes | None:
        """Encrypt the values; None when there are none."""
        if not values:
            return None
        return self._fernet.encrypt(json.dumps(values, sort_keys=True).encode())

    def open(self, token: bytes | None) -> dict[str, str]:
        """Decrypt values sealed by `seal`."""
        if not token:
            return {}
        try:
            data: dict[str, str] = json.loads(self._fernet.decrypt(bytes(token)))
        except InvalidToken:
            raise UserError(
                "cannot decrypt stored secret values: the secret key differs from the one they "
                "were sealed with; restore OVERSEER_SECRET_KEY (or the key file)"
            ) from None
        return data
