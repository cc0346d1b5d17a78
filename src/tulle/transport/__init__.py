"""Below the request path: how connections arrive and what the kernel says about them.

``original_dst`` reads where an iptables-redirected connection was going; ``timers`` is
the coarse timer wheel every deadline of the data plane sits on.
"""
