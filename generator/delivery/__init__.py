"""How the GitOps repository reaches clusters: engine files, and secrets carried by charts."""

from .config import APPLY, EXTERNAL, SEALED, SOPS, Delivery, SecretMethod, load
from .secrets import CIPHERTEXT, ciphertext_files, plain_files, record_part, secret_name

__all__ = [
    "APPLY",
    "CIPHERTEXT",
    "EXTERNAL",
    "SEALED",
    "SOPS",
    "Delivery",
    "SecretMethod",
    "ciphertext_files",
    "load",
    "plain_files",
    "record_part",
    "secret_name",
]
