"""Where a deployment's chart lives in the GitOps repository: `<namespace>/<release>`."""

from __future__ import annotations


class ChartPath(str):
    """`<namespace>/<release>`, built in one place and taken apart in one place.

    A str, so it is a path, a dict key and a commit-message word as it is.
    """

    __slots__ = ()

    @classmethod
    def of(cls, namespace: str, release: str) -> ChartPath:
        """The chart path of a release in a namespace."""
        return cls(f"{namespace}/{release}")

    @property
    def namespace(self) -> str:
        """The namespace: the path's first part."""
        return self.split("/", 1)[0]

    @property
    def release(self) -> str:
        """The release (the deployment_id): the path's last part."""
        return self.rsplit("/", 1)[-1]
