"""``host:port`` addresses: endpoints, listeners and the local application.

An :class:`Address` is parsed once at load and then read as two fields, so the proxy
never splits strings per request. IPv6 hosts are written in brackets
(``[::1]:4140``), as in URLs.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

if TYPE_CHECKING:  # pydantic is loaded by the schema models, not by a proxy process
    from pydantic import GetCoreSchemaHandler
    from pydantic_core import core_schema

from tulle.config.problems import describe

# RFC 1123 host names: dot-separated labels of letters, digits and inner hyphens.
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_MAX_PORT = 65535


def _valid_host(host: str) -> bool:
    if len(host) > 253 or not host:
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return all(_HOST_LABEL.fullmatch(label) for label in host.split("."))
    return True


@dataclass(frozen=True, slots=True)
class Address:
    """A parsed ``host:port``; ``str(address)`` gives it back in the same form."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str, *, allow_port_zero: bool = False) -> Address:
        """Parse ``"127.0.0.1:4140"`` or ``"[::1]:4140"``; raise ValueError if malformed.

        Port 0 ("any free port") is only meaningful for a listener, so it is refused
        unless ``allow_port_zero`` is set.
        """
        if not isinstance(text, str):
            raise ValueError(f"expected an address host:port, got {text!r}")
        got = f'got "{text}"'
        if text.startswith("["):
            host, sep, port_text = text[1:].partition("]:")
            if not sep or ":" not in host:
                raise ValueError(f"expected an address [ipv6]:port, {got}")
        else:
            host, sep, port_text = text.rpartition(":")
            if not sep:
                raise ValueError(f"expected an address host:port (the port is missing), {got}")
            if ":" in host:
                raise ValueError(f"expected an address host:port (write IPv6 as [::1]:80), {got}")
        if not _valid_host(host):
            raise ValueError(f"expected an address host:port with a valid host name or IP, {got}")
        if not port_text.isdigit():
            raise ValueError(f"expected an address host:port with a numeric port, {got}")
        port = int(port_text)
        low = 0 if allow_port_zero else 1
        if not low <= port <= _MAX_PORT:
            raise ValueError(f"expected a port from {low} to {_MAX_PORT}, {got}")
        return cls(host, port)

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return _address_schema(allow_port_zero=False)


@dataclass(frozen=True, slots=True)
class _AddressRules:
    """Marker for ``Annotated[Address, ...]`` that changes how the field parses."""

    allow_port_zero: bool

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return _address_schema(allow_port_zero=self.allow_port_zero)


# An address to listen on; port 0 means "any free port" (handy in tests).
ListenAddress = Annotated[Address, _AddressRules(allow_port_zero=True)]


def _address_schema(*, allow_port_zero: bool) -> core_schema.CoreSchema:
    from pydantic_core import PydanticCustomError, core_schema

    def validate(value: Any) -> Address:
        if isinstance(value, Address):
            return value
        if not isinstance(value, str):
            raise PydanticCustomError(
                "address", f"expected an address host:port, got {describe(value)}"
            )
        try:
            return Address.parse(value, allow_port_zero=allow_port_zero)
        except ValueError as error:
            raise PydanticCustomError("address", str(error)) from None

    return core_schema.no_info_plain_validator_function(
        validate, serialization=core_schema.plain_serializer_function_ser_schema(str),
        # For the CRDs' OpenAPI schemas (tulle.kube.crds): a string; the rest is checked here.
        json_schema_input_schema=core_schema.str_schema(min_length=3),
    )
