"""Sockets below HTTP: how connections arrive and what the kernel says about them.

``original_dst`` reads where an iptables-redirected connection was going;
``limits`` raises the open-files limit at start and says what it allows.
"""
