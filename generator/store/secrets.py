"""Encryption at rest for secret variable values (Fernet: AES-128-CBC with HMAC-SHA256).

The key comes from OVERSEER_SECRET_KEY, or else from a key file generated on first use with
mode 0600 beside the embedded database. OVERSEER_SECRET_KEY_PREVIOUS lists keys that still open
values (during a rotation); new values are always sealed with the first key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from ..errors import UserError


def _fernet(key: bytes, name: str) -> Fernet:
    try:
        return Fernet(key)
    except ValueError:
        raise UserError(
            f"{name} is not a Fernet key (32 url-safe base64-encoded bytes); generate one with "
            "`python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'`"
        ) from None


def fingerprint(key: bytes) -> str:
    """Names a key without revealing it: an HMAC of a fixed text under the key."""
    return hmac.new(key, b"overseer secret key", hashlib.sha256).hexdigest()[:16]


class SecretBox:
    """Encrypts and decrypts a mapping of variable name to secret value.

    `where` says where the key came from, for messages; `previous` keys only open.
    """

    def __init__(self, key: bytes, *, where: str = "", previous: Sequence[bytes] = ()) -> None:
        self.where = where or "OVERSEER_SECRET_KEY"
        self._keys = [key, *previous]
        self._fernet = MultiFernet(
            [_fernet(key, self.where)]
            + [_fernet(k, "OVERSEER_SECRET_KEY_PREVIOUS") for k in previous]
        )

    @property
    def fingerprints(self) -> list[str]:
        """The fingerprint of each key, the sealing one first."""
        return [fingerprint(k) for k in self._keys]

    @classmethod
    def from_config(
        cls,
        key: str | None,
        key_file: Path,
        previous: Sequence[str] = (),
        *,
        may_generate: Callable[[], bool] = lambda: True,
    ) -> SecretBox:
        """Use the configured key, else the key file, creating it (mode 0600) if absent.

        A key is generated only when `may_generate` says so: never while the database holds
        values sealed with another key.
        """
        old = [k.encode() for k in previous]
        if key:
            return cls(key.encode(), previous=old)
        where = f"the key file {key_file}"
        try:
            return cls(key_file.read_bytes().strip(), where=where, previous=old)
        except FileNotFoundError:
            pass
        if not may_generate():
            raise UserError(
                f"no secret key: OVERSEER_SECRET_KEY is unset and {key_file} does not exist, but "
                "the database holds secret values sealed with a key; set OVERSEER_SECRET_KEY "
                "(or restore that file) to the key they were sealed with"
            )
        key_file.parent.mkdir(parents=True, exist_ok=True)
        new_key = Fernet.generate_key()
        # O_EXCL: two first runs racing must not end up with two different keys.
        try:
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return cls(key_file.read_bytes().strip(), where=where, previous=old)
        with os.fdopen(fd, "wb") as fh:
            fh.write(new_key + b"\n")
        return cls(new_key, where=where, previous=old)

    def rotate(self, token: bytes) -> bytes:
        """The same values, sealed with the first key (opened with any)."""
        try:
            return self._fernet.rotate(bytes(token))
        except InvalidToken:
            raise self._cannot_open() from None

    def opens(self, token: bytes) -> bool:
        """Whether one of the keys opens `token`."""
        try:
            self._fernet.decrypt(bytes(token))
        except InvalidToken:
            return False
        return True

    def _cannot_open(self) -> UserError:
        return UserError(
            "cannot decrypt stored secret values: the secret key differs from the one they "
            "were sealed with; restore OVERSEER_SECRET_KEY (or the key file)"
        )

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
            raise self._cannot_open() from None
        return data
