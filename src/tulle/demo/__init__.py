"""``tulle demo``: three demo services, a real proxy, steady traffic and a live table.

The demo is the first thing a user runs, so it exercises the real pieces — the
``tulle proxy`` command, its manifests, its ``/metrics`` — and adds only what a
demo needs around them: services to balance over, traffic, and a table. Use
:func:`run_demo` with :class:`DemoOptions`; the modules are private.
"""

from tulle.demo.runner import DEMO_PROFILES, DemoError, DemoOptions, run_demo

__all__ = ["DEMO_PROFILES", "DemoError", "DemoOptions", "run_demo"]
