"""The secret key: which one seals the stored values, and rotating to a new one.

The database records the fingerprint of the key its values are sealed with. A process whose keys
(OVERSEER_SECRET_KEY, else the key file, and OVERSEER_SECRET_KEY_PREVIOUS) do not include it
refuses to seal or open anything, and a key is never generated while the database holds values
sealed with another. So a pod that lost its home directory says which key is missing instead of
sealing new values under a key that cannot open the old ones.

Rotation: set OVERSEER_SECRET_KEY to the new key and OVERSEER_SECRET_KEY_PREVIOUS to the old one
on every process, then run `overseer secrets rotate-key`. It re-seals every value with the new
key, a batch per transaction, each value only if it did not change meanwhile. Killed, it is run
again and goes on: every value opens with one of the two keys throughout. At the end the
database records the new key, and the old one can be dropped.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.fernet import Fernet, InvalidToken

from ..errors import UserError
from ..gitops.changeset import crash_point
from ..store import keys as store
from ..store.secrets import SecretBox, fingerprint
from .context import Context

BATCH = 200


def load(ctx: Context) -> SecretBox:
    """The process's keys, checked against the database's record (recorded on first use)."""
    settings = ctx.settings

    def nothing_sealed() -> bool:
        with ctx.transaction() as conn:
            return store.recorded(conn) is None and store.one_sealed(conn) is None

    box = SecretBox.from_config(
        settings.secret_key,
        settings.secret_key_file,
        settings.secret_key_previous,
        may_generate=nothing_sealed,
    )
    with ctx.transaction() as conn:
        recorded = store.recorded(conn)
        if recorded is None:  # the first use, or a database from before the record
            sample = store.one_sealed(conn)
            if sample is not None and not box.opens(sample):
                raise _mismatch(box, "an unrecorded key")
            store.record(conn, box.fingerprints[0])
        elif recorded not in box.fingerprints:
            raise _mismatch(box, f"the key {recorded}")
    return box


def _mismatch(box: SecretBox, sealed_with: str) -> UserError:
    return UserError(
        f"the stored secret values are sealed with {sealed_with}, but this process has "
        f"{', '.join(box.fingerprints)} (from {box.where}); set OVERSEER_SECRET_KEY to the key "
        "they were sealed with, or OVERSEER_SECRET_KEY_PREVIOUS to it while rotating"
    )


def rotate(ctx: Context, progress: Callable[[int], None] | None = None) -> int:
    """Re-seal every stored value with the first key; how many were re-sealed."""
    new_key = ctx.settings.secret_key
    if not new_key or not ctx.settings.secret_key_previous:
        raise UserError(
            "rotating needs the new key in OVERSEER_SECRET_KEY and the old one in "
            "OVERSEER_SECRET_KEY_PREVIOUS, on this process and on every server"
        )
    box = ctx.secrets
    primary = Fernet(new_key.encode())
    after, done = "", 0
    while True:
        with ctx.transaction() as conn:
            batch = store.sealed_after(conn, after, BATCH)
            for dep_id, token in batch:
                if not _sealed_by(primary, token) and store.reseal(
                    conn, dep_id, token, box.rotate(token)
                ):
                    done += 1
        if not batch:
            break
        after = batch[-1][0]
        if progress is not None:
            progress(done)
        crash_point("secret-rotation-batch")
    with ctx.transaction() as conn:
        store.record(conn, fingerprint(new_key.encode()))
    return done


def _sealed_by(key: Fernet, token: bytes) -> bool:
    try:
        key.decrypt(token)
    except InvalidToken:
        return False
    return True
