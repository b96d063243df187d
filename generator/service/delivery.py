"""What a render writes beside each chart for a pull-based engine.

Its encrypted secrets and its Flux files, for the direct render and review mode's proposals alike.

Ciphertext is kept from the base commit while the record's secret revision stands, and made
anew (from the sealed values in the database) only when it changes: encryption is randomised,
and a render that changes nothing writes nothing.
"""

from __future__ import annotations

from ..charts import ChartSource
from ..delivery import CIPHERTEXT, SOPS, ciphertext_files, engines
from ..delivery.secrets import recorded_part, sops_values_secret
from ..render import DeploymentInput
from ..store import deployments as store
from ..store.db import Connection
from .context import Context


class DeliveryFiles:
    """The delivery settings of one render, and the secret values it encrypts, opened lazily."""

    def __init__(self, ctx: Context, conn: Connection) -> None:
        self.ctx = ctx
        self.conn = conn
        self.config = ctx.delivery
        self.namespaces = ctx.settings.namespaces

    def shared(self) -> dict[str, bytes]:
        """The engine files no one chart owns, by path in the repository."""
        return engines.shared_files(self.config, self.namespaces)

    def ciphertext(
        self, dep: DeploymentInput, base: ChartSource, before: bytes | None
    ) -> dict[str, bytes]:
        """The chart's encrypted secrets (`before`: the base's record of the chart)."""
        part = dict(dep.secret_delivery)
        name = CIPHERTEXT.get(part.get("method", ""))
        if name is None:
            return {}
        if recorded_part(before) == part:
            kept = base.read_file(f"{dep.chart_path}/{name}")
            if kept is not None:
                return {name: kept}
        method = self.config.secrets.of(dep.namespace)
        return ciphertext_files(method, dep.namespace, dep.release, self._values(dep))

    def release(
        self, dep: DeploymentInput, base: ChartSource, before: bytes | None
    ) -> tuple[str, dict[str, bytes]]:
        """Where the chart's Flux files go, and what they are (none without Flux)."""
        where = engines.release_dir(dep.chart_path)
        part = dict(dep.secret_delivery)
        sealed = None
        if self.config.engine == "flux" and part.get("method") == SOPS:
            sealed = base.read_file(f"{where}/{engines.SOPS_VALUES_FILE}")
            if sealed is None or recorded_part(before) != part:
                method = self.config.secrets.of(dep.namespace)
                sealed = sops_values_secret(method, dep.chart_path, self._values(dep))
        return where, engines.release_files(self.config, dep.chart_path, sealed)

    def _values(self, dep: DeploymentInput) -> dict[str, str]:
        # Only the variables the chart declares: its schema refuses any other.
        values = self.ctx.secrets.open(store.secret_data(self.conn, dep.id))
        return {k: v for k, v in values.items() if k in dep.secret_keys}
