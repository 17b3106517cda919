"""The caller's token, from a file (a Kubernetes projected ServiceAccount token volume), and the TLS trust."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import grpc


class TokenFile:
    """A bearer token read from `path` and read again whenever the file changes: the kubelet rewrites a projected
    token well before it expires, by swapping a symlink (a new inode) in the volume. Each call stats the file
    (cheap) and re-reads it only when its identity, size or modification time moved. The token never appears in
    this object's repr, in an exception or in a log."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int, int] | None = None
        self._token = ""

    def __repr__(self) -> str:
        return f"TokenFile({str(self.path)!r})"

    def token(self) -> str:
        try:
            info = self.path.stat()
        except OSError as exc:
            raise TokenFileError(f"cannot read the token file {self.path}: {exc.strerror}") from None
        stamp = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
        with self._lock:
            if stamp != self._stamp:
                try:
                    token = self.path.read_text(encoding="ascii").strip()
                except (OSError, UnicodeDecodeError) as exc:
                    raise TokenFileError(
                        f"cannot read the token file {self.path}: {type(exc).__name__}"
                    ) from None
                if not token:
                    raise TokenFileError(f"the token file {self.path} is empty")
                self._token, self._stamp = token, stamp
            return self._token

    def metadata(self) -> tuple[str, str]:
        return ("authorization", f"Bearer {self.token()}")


class TokenFileError(Exception):
    """The token file is missing, unreadable or empty."""


def tls_credentials(ca_file: str | os.PathLike[str]) -> grpc.ChannelCredentials:
    """Server authentication against the CA bundle in `ca_file` (PEM)."""
    return grpc.ssl_channel_credentials(root_certificates=Path(ca_file).read_bytes())
