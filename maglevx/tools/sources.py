"""Reading configurations: files, their kind, and per-input parameters.

Tools that compare several directors (``diff``, ``consistency``) take each
configuration as a *spec*::

    PATH[:key=value[,key=value...]]

where the keys are ``kind`` (``history`` or ``snapshot``; by default the
content decides), ``variant``, ``word-size``, ``table-size`` and
``hash-port`` (backport only, 0 or 1). Keys not given come from the
command's ``--variant/--word-size/--table-size`` defaults. Examples::

    lb1.txt
    lb2-listing.txt:kind=snapshot,word-size=32
    proposed.txt:table-size=8191
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from typing import IO, Any

from maglevx.errors import MaglevxError
from maglevx.ipvsadm import split_lines
from maglevx.model import Director, DirectorParams

KINDS = ("history", "snapshot")
_OPTS_RE = re.compile(r"^[a-z_-]+=[^,=]*(,[a-z_-]+=[^,=]*)*$")


@dataclass(frozen=True)
class ConfigSpec:
    """One configuration to load: a file, its kind and director parameters."""

    path: str
    kind: str | None = None
    params: DirectorParams = DirectorParams()

    @property
    def label(self) -> str:
        """The path, as reports name the configuration."""
        return self.path


def parse_spec(text: str, defaults: DirectorParams | None = None) -> ConfigSpec:
    """Parse ``PATH[:key=value,...]`` (see the module docstring)."""
    params = defaults or DirectorParams()
    path, opts = text, ""
    if ":" in text:
        head, tail = text.rsplit(":", 1)
        if _OPTS_RE.match(tail):
            path, opts = head, tail
    kind = None
    changes: dict[str, Any] = {}
    for item in filter(None, opts.split(",")):
        key, value = item.split("=", 1)
        key = key.replace("_", "-")
        if key == "kind":
            if value not in KINDS:
                raise MaglevxError(
                    f"kind {value!r} is not history or snapshot",
                    source=text,
                    field="kind",
                )
            kind = value
        elif key == "variant":
            changes["variant"] = value
        elif key in ("word-size", "table-size"):
            if not value.isdigit():
                raise MaglevxError(f"{value!r} is not a number", source=text, field=key)
            changes[key.replace("-", "_")] = int(value)
        elif key == "hash-port":
            if value not in ("0", "1"):
                raise MaglevxError("hash-port is 0 or 1", source=text, field=key)
            changes["backport_hash_port"] = value == "1"
        else:
            raise MaglevxError(
                f"unknown key {key!r} (known: kind, variant, word-size, "
                "table-size, hash-port)",
                source=text,
                field=key,
            )
    try:
        params = replace(params, **changes)
    except MaglevxError as exc:
        raise exc.located(text) from None
    if not path:
        raise MaglevxError("empty file name", source=text)
    return ConfigSpec(path, kind, params)


def open_input(path: str, mode: str = "rb", **kwargs: Any) -> IO[Any]:
    """open() for reading; MaglevxError naming the file when it cannot be.

    open() raises OSError, and ValueError for a name holding a NUL byte
    (no file can have one).
    """
    try:
        return open(path, mode, **kwargs)  # noqa: SIM115 - the caller closes it
    except OSError as exc:
        raise MaglevxError(f"cannot read: {exc.strerror}", source=path) from None
    except ValueError:
        raise MaglevxError(
            "cannot read: the file name holds a NUL byte", source=path
        ) from None


def read_text(path: str) -> str:
    """The file's text; MaglevxError naming the file when it cannot be read."""
    try:
        with open_input(path, "r", encoding="utf-8") as f:
            return f.read()
    except OSError as exc:  # reading, after a successful open()
        raise MaglevxError(f"cannot read: {exc.strerror}", source=path) from None
    except UnicodeDecodeError:
        raise MaglevxError("not UTF-8 text", source=path) from None


def detect_kind(text: str) -> str:
    """``snapshot`` for ``ipvsadm -Ln`` output, else ``history``."""
    for raw in split_lines(text):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("IP Virtual Server", "Prot LocalAddress", "->")):
            return "snapshot"
        if re.match(r"^(TCP|UDP|SCTP|FWM)\s", line):
            return "snapshot"
        return "history"
    return "history"


def load_text(
    text: str, *, source: str, kind: str | None, params: DirectorParams
) -> Director:
    """A director from configuration text (history or snapshot)."""
    kw = asdict(params)
    if (kind or detect_kind(text)) == "snapshot":
        return Director.from_snapshot(text, source=source, **kw)
    return Director.from_history(text, source=source, **kw)


def load_spec(spec: ConfigSpec) -> Director:
    """The director *spec* describes."""
    return load_text(
        read_text(spec.path), source=spec.path, kind=spec.kind, params=spec.params
    )
