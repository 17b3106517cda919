"""The tests' loopback proxy (tests/support/blackhole.py) leaves nothing running once closed."""

from __future__ import annotations

from tests.support.blackhole import BlackHoleProxy
from tests.support.kube import free_port


def test_closing_the_proxy_ends_its_accept_thread() -> None:
    proxy = BlackHoleProxy(free_port())
    proxy.close()
    proxy.thread.join(30)
    assert not proxy.thread.is_alive()
