"""Fault-injection kit for sockit's tests (see docs/testing.md).

netns:   two test hosts in network namespaces; loss, rate, reorder, resets.
chaos:   the chaos_proxy relay (delay, 1..N byte writes, stalls, cuts).
helpers: small ulimit -n, small tmpfs, act (kill -9) after N bytes, waits.
cleanup: teardown at exit and on SIGTERM; sweeping what killed runs left.
"""
