"""The ServiceAccount the service's pods run as: its token is what the service presents to the API server for
its TokenReviews and SubjectAccessReviews (bound by children/accessbinding.py)."""

from __future__ import annotations

from userservice_operator.children.common import metadata, with_hash
from userservice_operator.children.context import BuildContext
from userservice_operator.spec import Manifest, UserService


def name(us: UserService) -> str:
    return us.name


def build(us: UserService, ctx: BuildContext | None = None) -> Manifest:
    return with_hash(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": metadata(us, name(us), "server"),
            "automountServiceAccountToken": True,
        }
    )
