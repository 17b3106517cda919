"""TLS from a certificate and key file that may be replaced at any time (cert-manager, a mounted Secret): new
connections get the current pair, no restart. The files are looked at, at most every RECHECK_SECONDS, when a
connection is being set up."""

from __future__ import annotations

import logging
import os
import ssl
import time
from typing import Any

import grpc

log = logging.getLogger(__name__)

RECHECK_SECONDS = 2.0


class RotatingCertificate:
    def __init__(self, cert_file: str, key_file: str) -> None:
        self._cert_file, self._key_file = cert_file, key_file
        self._checked_at = time.monotonic()
        self._stamp = self._file_stamp()
        # The current context; listeners keep the first, whose handshake callback hands over to the newest.
        self.context = self._context()
        self._grpc_stamp = self._stamp

    def _file_stamp(self) -> tuple[Any, ...]:
        # stat follows the ..data symlink a Secret volume swaps, so a new inode shows a rotation
        return tuple(
            (s.st_ino, s.st_mtime_ns, s.st_size) for s in map(os.stat, (self._cert_file, self._key_file))
        )

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self._cert_file, self._key_file)
        context.sni_callback = self._on_hello
        return context

    def _changed(self) -> bool:
        """Whether the files changed since the last look (looking at most every RECHECK_SECONDS)."""
        now = time.monotonic()
        if now - self._checked_at < RECHECK_SECONDS:
            return False
        self._checked_at = now
        try:
            stamp = self._file_stamp()
        except OSError as exc:  # mid-rotation: keep serving the pair we have
            log.warning("TLS files unreadable, keeping the current certificate", extra={"error": str(exc)})
            return False
        if stamp == self._stamp:
            return False
        try:
            self.context = self._context()
        except (OSError, ssl.SSLError) as exc:  # a half-written pair: try again on the next look
            log.warning("TLS files do not load, keeping the current certificate", extra={"error": str(exc)})
            return False
        self._stamp = stamp
        log.info("TLS certificate reloaded")
        return True

    def _on_hello(
        self, connection: ssl.SSLObject | ssl.SSLSocket, _name: str | None, _ctx: ssl.SSLContext
    ) -> None:
        """Called for every TLS handshake (SNI or not): hands the connection the current pair."""
        self._changed()
        if connection.context is not self.context:
            connection.context = self.context

    def grpc_credentials(self) -> grpc.ServerCredentials:
        def fetch() -> grpc.ServerCertificateConfiguration | None:
            self._changed()
            if self._grpc_stamp == self._stamp:
                return None  # keep the current configuration
            self._grpc_stamp = self._stamp
            return self._grpc_config()

        return grpc.dynamic_ssl_server_credentials(self._grpc_config(), fetch)

    def _grpc_config(self) -> grpc.ServerCertificateConfiguration:
        with open(self._key_file, "rb") as key, open(self._cert_file, "rb") as cert:
            return grpc.ssl_server_certificate_configuration([(key.read(), cert.read())])
