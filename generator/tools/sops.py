"""The one wrapper around the pinned `sops`: encrypting a chart's secret values to age keys.

SOPS's file format (a data key per file, AES-GCM per value, a MAC over the values, the data key
encrypted to each recipient) is what Flux and helm-secrets read; no well-kept Python library
writes it, so the pinned binary does. The plaintext goes through a pipe, never a file.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Sequence

from ..errors import UserError
from .binaries import find


def encrypt(plaintext: bytes, recipients: Sequence[str], *, encrypted_regex: str) -> bytes:
    """`plaintext` (YAML) with the values of keys matching `encrypted_regex` encrypted."""
    with tempfile.TemporaryDirectory(prefix="overseer-sops-") as cwd:
        # An empty working directory: no .sops.yaml of the caller's may add rules of its own.
        proc = subprocess.run(
            [
                find("sops"),
                "encrypt",
                "--age",
                ",".join(recipients),
                "--encrypted-regex",
                encrypted_regex,
                "--input-type",
                "yaml",
                "--output-type",
                "yaml",
                "--filename-override",
                "secrets.enc.yaml",
            ],
            input=plaintext,
            capture_output=True,
            check=False,
            cwd=cwd,
            timeout=60,
        )
    if proc.returncode != 0:
        # sops's message names the recipient it could not use; it never echoes the input.
        raise UserError(f"sops could not encrypt: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout
