"""Tulle: a service mesh in Python.

Per-request load balancing, failover and golden-signal monitoring for every
service, without touching the service's code. See ``docs/`` and DESIGN notes in
the README for the map of the packages.
"""

__version__ = "0.1.0"
