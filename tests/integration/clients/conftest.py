"""The clients' tests call a real service over loopback, with real ServiceAccount tokens that the service checks
against a real kube-apiserver (TokenReview, SubjectAccessReview): a token a client failed to send is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.access import Setup, prepare, service_env
from tests.support.kube import KubeCluster
from tests.support.service import RunningService, in_process


@dataclass(frozen=True)
class TokenFiles:
    """Token files as a projected volume holds them: one for a caller granted every method, one for a caller
    granted none."""

    allowed: Path
    refused: Path


@pytest.fixture(scope="module")
def callers(kube_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory) -> Setup:
    return prepare(kube_cluster, tmp_path_factory.mktemp("callers"))


@pytest.fixture(scope="module")
def token_files(callers: Setup, tmp_path_factory: pytest.TempPathFactory) -> TokenFiles:
    folder = tmp_path_factory.mktemp("tokens")
    files = TokenFiles(folder / "allowed", folder / "refused")
    files.allowed.write_text(callers.tokens["may-all"])
    files.refused.write_text(callers.tokens["may-nothing"])
    return files


@pytest.fixture(scope="module")
async def service(database: str, callers: Setup) -> AsyncIterator[RunningService]:
    async with in_process(database, env=service_env(callers)) as running:
        yield running
