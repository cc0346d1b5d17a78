"""Methods a checked configuration object has in both of its forms: the schema model
(pydantic, where manifests are checked) and its record (`tulle.config.records`, what
a proxy process reads). Each mixin reads only fields, so it works on either."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from tulle.config.records import RecordMethods

if TYPE_CHECKING:
    from tulle.config.schema_authorization import LabelSelectorRequirement
    from tulle.config.schema_common import ObjectMeta


class LabelSelectorMethods(RecordMethods):
    """Kubernetes' label selector: every label and every expression must match; an
    empty selector matches every pod."""

    __slots__ = ()
    if TYPE_CHECKING:  # the fields (declared by the model, which pydantic reads alone)
        match_labels: dict[str, str]
        match_expressions: tuple[LabelSelectorRequirement, ...]

    def matches(self, labels: dict[str, str]) -> bool:
        if any(labels.get(key) != value for key, value in self.match_labels.items()):
            return False
        for requirement in self.match_expressions:
            present = requirement.key in labels
            value = labels.get(requirement.key)
            operator = requirement.operator
            if ((operator == "In" and value not in requirement.values)
                    or (operator == "NotIn" and present and value in requirement.values)
                    or (operator == "Exists" and not present)
                    or (operator == "DoesNotExist" and present)):
                return False
        return True


class ValueMatchMethods(RecordMethods):
    """A match on a ``value`` that may be a regular expression, compiled once at load."""

    __slots__ = ()
    if TYPE_CHECKING:
        _pattern: re.Pattern[str] | None

    @property
    def pattern(self) -> re.Pattern[str] | None:
        """The compiled expression for ``RegularExpression`` matches, else None."""
        return self._pattern


class NamedByMetadata(RecordMethods):
    """An object named by its ``metadata``."""

    __slots__ = ()
    if TYPE_CHECKING:
        metadata: ObjectMeta

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace
