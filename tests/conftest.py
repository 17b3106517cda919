"""Root of the test tree: registers the shared fixtures of tests/support (real PostgreSQL, real kube-apiserver)."""

pytest_plugins = [
    "tests.support.postgres",
    "tests.support.kube",
    "tests.support.replication",
]
