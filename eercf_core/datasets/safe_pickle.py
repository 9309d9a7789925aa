"""Load an untrusted pickle that may hold only dicts, lists and strings, and nothing executable.

The opcode stream is checked first (`pickletools.genops` parses without executing anything): any
opcode outside the plain-container whitelist is refused by name, a class or function import as
`module.name`. Only then is it unpickled, by an Unpickler whose `find_class` and `persistent_load`
refuse everything (defence in depth: no import can ever happen). Python 2 byte strings decode as
UTF-8 text.
"""
from __future__ import annotations

import io
import pickle
import pickletools
from pathlib import Path
from typing import NoReturn

from eercf_core.errors import UserInputError

# Everything a pickle of dicts, lists and str needs, for protocols 0-5 (Python 2 or 3 writers).
ALLOWED_OPCODES = frozenset({
    "PROTO", "FRAME", "STOP", "MARK",
    "EMPTY_DICT", "DICT", "SETITEM", "SETITEMS",
    "EMPTY_LIST", "LIST", "APPEND", "APPENDS",
    "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8",
    "STRING", "BINSTRING", "SHORT_BINSTRING",
    "MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET",
})


class UnsafePickleError(UserInputError):
    """The pickle holds something other than dicts, lists and strings; the message names it."""


class _RefusingUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> NoReturn:
        raise UnsafePickleError(f"refused import of {module}.{name}")

    def persistent_load(self, pid: object) -> NoReturn:
        raise UnsafePickleError(f"refused persistent id {pid!r}")


def _imported_name(data: bytes) -> str | None:
    """`module.name` that the stream tries to import, from the refusing unpickler (it raises at
    the import, before anything could be called)."""
    try:
        _RefusingUnpickler(io.BytesIO(data), encoding="utf-8").load()
    except UnsafePickleError as exc:
        return str(exc).removeprefix("refused import of ")
    except Exception:  # the stream breaks before its import
        return None
    return None


def check_opcodes(data: bytes, source: str) -> None:
    """UnsafePickleError naming the first opcode (or imported global) outside the whitelist."""
    try:
        refused = next(((op, arg, pos) for op, arg, pos in pickletools.genops(data)
                        if op.name not in ALLOWED_OPCODES), None)
    except Exception as exc:  # genops raises ValueError and others on a garbled stream
        raise UnsafePickleError(f"{source}: not a readable pickle ({exc})") from None
    if refused is None:
        return
    opcode, arg, position = refused
    what = f"opcode {opcode.name}"
    if opcode.name in ("GLOBAL", "INST"):
        what = f"import of {str(arg).replace(' ', '.')} ({opcode.name})"
    elif opcode.name in ("STACK_GLOBAL", "EXT1", "EXT2", "EXT4"):
        name = _imported_name(data)
        what = f"import of {name} ({opcode.name})" if name else what
    raise UnsafePickleError(f"{source}: refused {what} at byte {position}: only dicts, lists and "
                            "strings are allowed")


def load_plain_pickle(path: Path) -> object:
    """The object in `path`, built only from dicts, lists and strings; UnsafePickleError
    otherwise."""
    data = Path(path).read_bytes()
    check_opcodes(data, str(path))
    try:
        return _RefusingUnpickler(io.BytesIO(data), encoding="utf-8").load()
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{path}: {exc}") from None
    except Exception as exc:
        raise UnsafePickleError(f"{path}: not a readable pickle ({exc})") from None
