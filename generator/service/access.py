"""Who may do what, where: named API tokens, their scopes, and the namespaces deployments may use.

A token has scopes (`read`, `deploy`, `admin`) and namespaces. `admin` manages plugins; `deploy`
creates, changes and deletes deployments in its namespaces, and reads them; `read` reads the
deployments of its namespaces. `OVERSEER_API_TOKEN`, when set, is the bootstrap token: every
scope, every allowed namespace. No namespace outside OVERSEER_ALLOWED_NAMESPACES (by default just
OVERSEER_NAMESPACE) may be named, and `kube-*` and `default` never: the CLI holds to it too.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..config import Settings
from ..errors import Conflict, Forbidden, NotFound, UserError
from ..ids import new_id
from ..manifest.model import DNS1123_LABEL
from ..store import tokens as store
from ..store.tokens import TokenRecord
from .context import Context

READ, DEPLOY, ADMIN = "read", "deploy", "admin"
SCOPES = (READ, DEPLOY, ADMIN)
BOOTSTRAP = "bootstrap"  # the name OVERSEER_API_TOKEN goes by in commits and errors
# How long a server trusts what it looked up: a revoked token stops working within this.
CACHE_SECONDS = 5.0


@dataclass(frozen=True)
class Principal:
    """Who a request comes from."""

    name: str
    scopes: frozenset[str]
    namespaces: tuple[str, ...] | None  # None: every allowed namespace

    def may(self, scope: str) -> bool:
        """Whether the token holds `scope` (`deploy` reads too)."""
        return scope in self.scopes or (scope == READ and DEPLOY in self.scopes)

    def sees(self, namespace: str) -> bool:
        """Whether its deployments in `namespace` are this token's to read or change."""
        return self.namespaces is None or namespace in self.namespaces


def reserved(namespace: str) -> bool:
    """The cluster's own namespaces, which no deployment may use."""
    return namespace == "default" or namespace.startswith("kube-")


def require_namespace(
    settings: Settings, namespace: str, principal: Principal | None = None
) -> None:
    """Refuse (403) a namespace the settings or the token do not allow, naming what is allowed."""
    allowed = settings.namespaces
    if reserved(namespace):
        raise Forbidden(
            f'namespace "{namespace}" belongs to the cluster, not to deployments; '
            f"use one of: {', '.join(allowed)}"
        )
    if namespace not in allowed:
        raise Forbidden(
            f'namespace "{namespace}" is not one deployments may use: '
            f"OVERSEER_ALLOWED_NAMESPACES is {', '.join(allowed)}; add it there, or use one of them"
        )
    require_visible(principal, namespace)


def require_visible(principal: Principal | None, namespace: str) -> None:
    """Refuse (403) a deployment in a namespace the token does not hold."""
    if principal is not None and not principal.sees(namespace):
        mine = ", ".join(principal.namespaces or ())
        raise Forbidden(
            f'token "{principal.name}" may not act in namespace "{namespace}"; '
            f"its namespaces are: {mine or '(none)'}"
        )


def who(principal: Principal | None) -> str | None:
    """How commits and pull requests name the token that asked; None for the CLI's user."""
    return f'token "{principal.name}"' if principal is not None else None


def require_scope(principal: Principal | None, scope: str) -> None:
    """Refuse (403) a request whose token lacks `scope`; None (no tokens in use) may do anything."""
    if principal is not None and not principal.may(scope):
        raise Forbidden(
            f'token "{principal.name}" lacks the {scope} scope (it has: '
            f"{', '.join(sorted(principal.scopes))}); ask for a token with {scope}"
        )


def _hash(value: str) -> str:
    # The tokens are 256 random bits: a plain digest is as good as a slow hash here, and cheap
    # enough to compute on every request.
    return hashlib.sha256(value.encode()).hexdigest()


def create(
    ctx: Context,
    name: str,
    scopes: Sequence[str],
    namespaces: Sequence[str],
    *,
    expires_in: timedelta | None = None,
) -> tuple[TokenRecord, str]:
    """A new named token and its value, which is shown this once and never stored."""
    if not re.match(DNS1123_LABEL, name) or len(name) > 63:
        raise UserError(f'token name "{name}": use a DNS-1123 label such as ci-team-a')
    if name == BOOTSTRAP:
        raise UserError(f'token name "{name}" is OVERSEER_API_TOKEN\'s; choose another')
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise UserError(
            f"scopes {', '.join(unknown) or '(none)'}: give one or more of {', '.join(SCOPES)}"
        )
    if set(scopes) & {READ, DEPLOY} and not namespaces:
        raise UserError("a read or deploy token needs its namespaces; pass --namespace")
    for namespace in namespaces:
        require_namespace(ctx.settings, namespace)
    value = "ovs_" + secrets.token_urlsafe(32)
    expires_at = datetime.now(UTC) + expires_in if expires_in else None
    with ctx.transaction() as conn:
        record = store.insert(
            conn,
            token_id=new_id(),
            name=name,
            token_hash=_hash(value),
            scopes=sorted(set(scopes)),
            namespaces=sorted(set(namespaces)),
            expires_at=expires_at,
        )
    if record is None:
        raise Conflict(f'a token named "{name}" exists; revoke it first, or choose another name')
    return record, value


def list_tokens(ctx: Context) -> list[TokenRecord]:
    """Every token, with its scopes, namespaces, expiry and revocation; never a value."""
    with ctx.transaction() as conn:
        return store.list_all(conn)


def revoke(ctx: Context, name: str) -> TokenRecord:
    """Revoke a token: servers refuse it within CACHE_SECONDS."""
    with ctx.transaction() as conn:
        record = store.revoke(conn, name)
    if record is None:
        raise NotFound(f'no live token named "{name}"', hint="see `overseer token list`")
    return record


def tokens_in_use(ctx: Context) -> bool:
    """Once OVERSEER_API_TOKEN is set or a token has been created, every route needs one."""
    if ctx.settings.api_token is not None:
        return True
    with ctx.transaction() as conn:
        return store.any_live(conn)


class Gate:
    """A server's view of the tokens: who a bearer value is, and whether tokens are in use.

    Lookups are cached for CACHE_SECONDS, so most requests cost no query.
    """

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._lock = threading.Lock()
        self._known: dict[str, tuple[float, Principal | None]] = {}
        self._in_use: tuple[float, bool] | None = None

    def cached_in_use(self) -> bool | None:
        """`in_use` when it needs no query; None when it does."""
        if self.ctx.settings.api_token is not None:
            return True
        cached = self._in_use
        if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        return None

    def in_use(self) -> bool:
        """Tokens are in use once OVERSEER_API_TOKEN is set or a token has been created."""
        cached = self.cached_in_use()
        if cached is not None:
            return cached
        used = tokens_in_use(self.ctx)
        self._in_use = (time.monotonic(), used)
        return used

    def cached_principal(self, value: str) -> tuple[bool, Principal | None]:
        """(known, who): whether `principal` can answer without a query, and its answer."""
        bootstrap = self.ctx.settings.api_token
        if bootstrap is not None and hmac.compare_digest(value.encode(), bootstrap.encode()):
            return True, Principal(BOOTSTRAP, frozenset(SCOPES), None)
        with self._lock:
            cached = self._known.get(_hash(value))
        if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
            return True, cached[1]
        return False, None

    def principal(self, value: str) -> Principal | None:
        """Who holds the bearer `value`; None for an unknown, revoked or expired one."""
        known, found = self.cached_principal(value)
        if known:
            return found
        digest = _hash(value)
        now = time.monotonic()
        with self.ctx.transaction() as conn:
            record = store.by_hash(conn, digest)
        found = (
            Principal(record.name, frozenset(record.scopes), tuple(record.namespaces))
            if record is not None
            else None
        )
        with self._lock:
            if len(self._known) > 10_000:  # a flood of made-up tokens must not grow it forever
                self._known.clear()
            self._known[digest] = (now, found)
        return found
