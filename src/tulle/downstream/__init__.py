"""The client side: connections accepted by a listener, each request handed to the core.

``detect`` reads each connection's first bytes and hands it to the protocol it speaks;
``h1`` serves HTTP/1.1 (pipelining, answered in order); ``listener`` holds what every
connection of one listener shares.
"""

from tulle.downstream.detect import ProtocolDetector
from tulle.downstream.h1 import ClientConnection
from tulle.downstream.listener import ListenerContext

__all__ = ["ClientConnection", "ListenerContext", "ProtocolDetector"]
