"""The key that seals secret values: never replaced silently, and rotated without loss."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from cryptography.fernet import Fernet

from generator.config import Settings
from generator.errors import UserError
from generator.service import secret_keys
from generator.service.context import Context
from generator.store.secrets import SecretBox, fingerprint
from tests.conftest import TEST_KEY, Cli, deploy
from tests.test_api import free_port


def sealed(url: str) -> list[bytes]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT secret_data FROM deployments WHERE secret_data IS NOT NULL ORDER BY id"
        ).fetchall()
    return [bytes(r[0]) for r in rows]


def test_a_lost_key_is_named_not_replaced(cli: Cli, claude_manifest: Path, tmp_path: Path) -> None:
    assert cli("plugin", "register", str(claude_manifest)).exit_code == 0
    keyless = {"OVERSEER_SECRET_KEY": "", "OVERSEER_HOME": str(tmp_path / "first")}
    assert cli.deploy(env=keyless)["data"]["ANTHROPIC_API_KEY"] == "<redacted>"  # key generated
    assert (tmp_path / "first" / "secret.key").is_file()
    # A new home on the same database, as a new pod's would be: no key, and none made up.
    wiped = {"OVERSEER_SECRET_KEY": "", "OVERSEER_HOME": str(tmp_path / "second")}
    refused = cli(
        "deploy", "create", "claude-environment", "--set", "ANTHROPIC_API_KEY=k", env=wiped
    )
    assert refused.exit_code == 1
    assert refused.stderr.startswith(
        "Error: no secret key: OVERSEER_SECRET_KEY is unset and "
        f"{tmp_path / 'second' / 'secret.key'} does not exist, but the database holds secret "
        "values sealed with a key; set OVERSEER_SECRET_KEY"
    )
    assert not (tmp_path / "second" / "secret.key").exists()
    # Another key is refused too, named by its fingerprint and where it came from.
    other = Fernet.generate_key().decode()
    wrong = cli(
        "deploy", "create", "claude-environment", "--set", "ANTHROPIC_API_KEY=k",
        env={**wiped, "OVERSEER_SECRET_KEY": other},
    )  # fmt: skip
    first_key = (tmp_path / "first" / "secret.key").read_bytes().strip()
    assert (
        wrong.exit_code == 1
        and (
            f"sealed with the key {fingerprint(first_key)}, but this process has "
            f"{fingerprint(other.encode())} (from OVERSEER_SECRET_KEY)"
        )
        in wrong.stderr
    )
    assert len(sealed(cli.env["DATABASE_URL"])) == 1  # nothing sealed under the wrong key
    # The right key, restored from where it was kept, works.
    restored = {**wiped, "OVERSEER_SECRET_KEY": first_key.decode()}
    assert cli("deploy", "create", "claude-environment", "--set", "ANTHROPIC_API_KEY=k",
               env=restored).exit_code == 0  # fmt: skip


def test_a_server_with_the_wrong_key_does_not_start(cli: Cli, claude_manifest: Path) -> None:
    assert cli("plugin", "register", str(claude_manifest)).exit_code == 0
    cli.deploy()
    env = {**os.environ, **cli.env, "OVERSEER_SECRET_KEY": Fernet.generate_key().decode()}
    env.pop("OVERSEER_API_TOKEN", None)
    server = subprocess.Popen(
        ["overseer", "serve", "--port", str(free_port()), "--no-worker"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its writer goes with it, whatever happens here
    )
    try:
        _, stderr = server.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
    assert server.returncode != 0
    assert "the stored secret values are sealed with the key" in stderr


def test_rotation_reseals_everything_and_survives_a_kill(ctx: Context, settings: Settings) -> None:
    for i in range(secret_keys.BATCH + 50):
        deploy(ctx, render=False, HEIGHT=str(i))
    before = [SecretBox(TEST_KEY.encode()).open(t) for t in sealed(ctx.database_url)]
    new = Fernet.generate_key().decode()
    env = {
        **os.environ,
        **Cli(settings).env,
        "OVERSEER_SECRET_KEY": new,
        "OVERSEER_SECRET_KEY_PREVIOUS": TEST_KEY,
    }
    killed = subprocess.run(
        [sys.executable, "-m", "generator.cli", "secrets", "rotate-key"],
        env={**env, "OVERSEER_TEST_KILL_AT": "secret-rotation-batch"},
        capture_output=True,
        text=True,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    halfway = sealed(ctx.database_url)
    by_new = [t for t in halfway if SecretBox(new.encode()).opens(t)]
    assert len(by_new) == secret_keys.BATCH  # one batch committed, the rest untouched
    # Until the rotation has finished, the new key alone is refused: the old values need the old.
    alone = Context(dataclasses.replace(settings, secret_key=new))
    with pytest.raises(UserError, match="sealed with the key"):
        alone.secrets  # noqa: B018
    both = Context(dataclasses.replace(settings, secret_key=new, secret_key_previous=(TEST_KEY,)))
    assert [both.secrets.open(t) for t in halfway] == before  # nothing lost meanwhile
    again = subprocess.run(
        [sys.executable, "-m", "generator.cli", "secrets", "rotate-key"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0, again.stderr
    assert (
        again.stdout
        == "re-sealed 50 deployment(s) with the new key; the old key may now be dropped\n"
    )
    after = sealed(ctx.database_url)
    assert [SecretBox(new.encode()).open(t) for t in after] == before
    assert Context(dataclasses.replace(settings, secret_key=new)).secrets.fingerprints == [
        fingerprint(new.encode())
    ]
    with pytest.raises(UserError, match="sealed with the key"):
        Context(settings).secrets  # noqa: B018 - the old key, after the rotation
