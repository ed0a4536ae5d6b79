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
from dataclasses import dataclass, replace
from typing import IO, Any

from maglevx.errors import MaglevxError
from maglevx.model import DEFAULT_TABLE_SIZE, Director, check_params

KINDS = ("history", "snapshot")
_OPTS_RE = re.compile(r"^[a-z_-]+=[^,=]*(,[a-z_-]+=[^,=]*)*$")


@dataclass(frozen=True)
class DirectorParams:
    """How a director builds tables (see :class:`maglevx.model.Director`)."""

    variant: str = "upstream"
    word_size: int = 64
    table_size: int = DEFAULT_TABLE_SIZE
    backport_hash_port: bool = True

    def describe(self) -> str:
        """E.g. ``upstream, 64-bit, M=4093``."""
        s = f"{self.variant}, {self.word_size}-bit, M={self.table_size}"
        if self.variant == "backport" and not self.backport_hash_port:
            s += ", hash_port=0"
        return s


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
            params = replace(params, variant=value)
        elif key in ("word-size", "table-size"):
            if not value.isdigit():
                raise MaglevxError(f"{value!r} is not a number", source=text, field=key)
            attr = key.replace("-", "_")
            params = replace(params, **{attr: int(value)})
        elif key == "hash-port":
            if value not in ("0", "1"):
                raise MaglevxError("hash-port is 0 or 1", source=text, field=key)
            params = replace(params, backport_hash_port=value == "1")
        else:
            raise MaglevxError(
                f"unknown key {key!r} (known: kind, variant, word-size, "
                "table-size, hash-port)",
                source=text,
                field=key,
            )
    try:
        check_params(params.variant, params.word_size, params.table_size)
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
    for raw in text.splitlines():
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
    kw = dict(
        variant=params.variant,
        word_size=params.word_size,
        table_size=params.table_size,
        backport_hash_port=params.backport_hash_port,
    )
    if (kind or detect_kind(text)) == "snapshot":
        return Director.from_snapshot(text, source=source, **kw)
    return Director.from_history(text, source=source, **kw)


def resolve_service(text: str, director: Director, *, field: str = "--service") -> str:
    """The name of *director*'s mh service that *text* names.

    Accepts what ipvsadm prints (``TCP  10.0.0.1:80``, ``FWM  3``,
    ``FWM 3 IPv6``) in any case and spacing, and ``tcp:10.0.0.1:80``. The
    error lists the mh services there are.
    """
    from maglevx.ipvsadm import parse_endpoint
    from maglevx.model import format_endpoint

    words = text.replace("\t", " ").strip().split()
    if len(words) == 1 and words[0].count(":") >= 2 and "[" not in words[0][:4]:
        head, _, rest = words[0].partition(":")  # tcp:10.0.0.1:80
        words = [head, rest]
    mh = [s for s in director.services if s.scheduler == "mh"]
    names = [s.name for s in mh]
    want = None
    try:
        if len(words) >= 2 and words[0].upper() in ("TCP", "UDP", "SCTP"):
            address, port = parse_endpoint(words[1], field)
            if len(words) == 2:
                want = f"{words[0].upper()} {format_endpoint(address, port or 0)}"
        elif len(words) >= 2 and words[0].upper() == "FWM" and words[1].isdigit():
            want = f"FWM {int(words[1])}"
            if words[2:] and words[2].upper() == "IPV6":
                want += " IPv6"
    except MaglevxError:
        want = None
    if want in names:
        return want
    listed = ", ".join(repr(n) for n in names) or "none"
    raise MaglevxError(f"no mh service {text!r} (mh services: {listed})", field=field)


def load_spec(spec: ConfigSpec) -> Director:
    """The director *spec* describes."""
    return load_text(
        read_text(spec.path), source=spec.path, kind=spec.kind, params=spec.params
    )
