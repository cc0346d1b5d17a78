"""Side-by-side benchmarks of Tulle against HAProxy, nginx and a direct connection.

``python -m bench [SCENARIO ...] [--quick]`` (or ``make bench``) runs scenarios from
``bench.scenarios``. Every scenario starts the same backends, puts each proxy under
test in front of them, drives the same load through each in turn, and writes
``bench/results/<scenario>.md`` (plus a plot). The shared parts live in one module a
concern: ``processes`` (start, pin, measure and always stop processes), ``peers``
(the proxies under test and their configs), ``load`` (wrk and hey, and parsing their
output), ``stats`` (percentiles), ``report`` (the markdown) and ``plots``.
"""
