"""Field access in the `(name (key value) ...)` record convention.

Every vnet record (vnets, vifs, varp entries, config files) is a list whose
head names the record and whose remaining elements are `(key value ...)`
lists.  Xen allows an optional `(@ ...)` attribute list right after the
head; it carries no fields, so lookups skip it as Xen's sxp.children does.
"""

from __future__ import annotations

from typing import Optional

from .value import Value

_ATTRIBUTES = "@"


def _body(value: list) -> list:
    """Elements after the head, without a leading attribute list."""
    if not isinstance(value, list) or len(value) < 2:
        return []
    second = value[1]
    if isinstance(second, list) and second and second[0] == _ATTRIBUTES:
        return value[2:]
    return value[1:]


def children(value: list, key: Optional[str] = None) -> list[list]:
    """Child lists of a record, optionally only those headed by `key`.

    Atoms among the elements are left out: callers iterate over fields,
    and a bare atom is never a field.
    """
    if key is None:
        return [c for c in _body(value) if isinstance(c, list)]
    return [c for c in _body(value) if isinstance(c, list) and c and c[0] == key]


def child_value(value: list, key: str, default: Optional[Value] = None) -> Optional[Value]:
    """Value of the first `(key value ...)` field, or `default`.

    The first match wins, as in both the C and Python originals, so a
    repeated key cannot override an earlier one.  The value is the field's
    first element after its head (skipping an attribute list there too,
    like Xen's child_value); a field with no value gives `default`.
    """
    for child in _body(value):
        if isinstance(child, list) and child and child[0] == key:
            body = _body(child)
            return body[0] if body else default
    return default
