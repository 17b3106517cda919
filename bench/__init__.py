"""`make bench`: the service and the operator measured against their limits in the same run.

See docs/performance.md. `python -m bench --smoke` is the bounded run the test suite uses.
"""
