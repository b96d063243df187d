"""The one wrapper around the pinned `sops`: encrypting a chart's secret values to age keys.

SOPS's file format (a data key per file, AES-GCM per value, a MAC over the values, the data key
encrypted to each recipient) is what Flux and helm-secrets read; no well-kept Python library
writes it, so the pinned binary does. The plaintext goes through a pipe, never a file.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Sequence

from ..errors import RenderFailed
from .binaries import find


def encrypt(plaintext: bytes, recipients: Sequence[str], *, encrypted_regex: str) -> bytes:
    """`plaintext` (YAML) with the values of keys matching `encrypted_regex` encrypted."""
    with tempfile.TemporaryDirectory(prefix="overseer-sops-") as cwd:
        # An empty working directory and no config file: no .sops.yaml may add rules of its own.
        try:
            proc = _run(cwd, plaintext, recipients, encrypted_regex)
        except subprocess.TimeoutExpired:
            raise RenderFailed("sops did not finish encrypting within 60 s") from None
    if proc.returncode != 0:
        # sops's message names the recipient it could not use; it never echoes the input.
        detail = proc.stderr.decode(errors="replace").strip()
        raise RenderFailed(f"sops could not encrypt: {detail}")
    return proc.stdout


def _run(
    cwd: str, plaintext: bytes, recipients: Sequence[str], encrypted_regex: str
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [
            find("sops"),
            "--config",
            os.devnull,
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
