"""One git command run to completion, its failure reported as git's own verdict.

Refs move in-process (`refs`) and objects are read and written in-process (`objects`);
everything else the package asks of git goes through `run`.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from ..errors import GitFailed
from .objects import IDENTITY

# user:password@ (or a token) in a remote's URL: never into a message, a log or an API answer.
_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with the credentials of any URL in it replaced by `***`."""
    return _CREDENTIALS.sub(r"\g<scheme>***@", text)


def run(
    where: Path,
    *args: str,
    stdin: bytes = b"",
    hint: str = "",
    bare: bool = False,
    timeout: float | None = None,
) -> str:
    """Run `git ARGS` in the work tree `where` (or, `bare`, on the git directory `where`).

    Returns its standard output; raises GitFailed naming the command and git's first `fatal:`
    or `error:` line (its advice lines after that say less), with the whole of standard error
    kept as `output`.
    """
    place = [f"--git-dir={where}"] if bare else ["-C", str(where)]
    command = next(a for a in args if not a.startswith("-") and "=" not in a)
    try:
        done = subprocess.run(
            ["git", *place, *args],
            input=stdin,
            capture_output=True,
            check=False,
            env={**os.environ, **IDENTITY, "GIT_TERMINAL_PROMPT": "0"},
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise GitFailed(command, f"no answer within {timeout:g} s", hint) from None
    if done.returncode != 0:
        err = redact(done.stderr.decode(errors="replace"))
        lines = [line.strip(" '") for line in err.splitlines() if line.strip()]
        verdict = [line for line in lines if line.startswith(("fatal:", "error:"))]
        raise GitFailed(command, (verdict or lines or [""])[0], hint, output=err)
    return done.stdout.decode(errors="replace").strip()
