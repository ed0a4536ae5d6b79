"""The one exception type maglevx raises for bad input."""

from __future__ import annotations


def _one_line(text: str) -> str:
    """*text* with line breaks and other unprintable characters escaped.

    Messages quote what the user gave (file names, tokens): a file name
    holding a newline must not split an error into two lines.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


# Messages quote what they refuse; a hostile input must not make them huge.
MAX_MESSAGE = 480


def _cap(text: str, limit: int) -> str:
    """*text*, its middle cut out when longer than *limit* (both ends kept)."""
    if len(text) <= limit:
        return text
    keep = limit // 2 - 20
    return f"{text[:keep]}...({len(text) - 2 * keep} characters)...{text[-keep:]}"


class MaglevxError(ValueError):
    """Bad input: names what is wrong and where (file, line, field).

    ``str(err)`` is a single line such as
    ``history.txt:3: field '-w': weight 70000 is outside 0..65535``.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.source = source
        self.line = line
        self.field = field
        super().__init__(self._render())

    def _render(self) -> str:
        where = ""
        if self.source is not None:
            line = "" if self.line is None else f":{self.line}"
            where = f"{self.source}{line}: "
        elif self.line is not None:
            where = f"line {self.line}: "
        what = f"field {_cap(self.field, 60)!r}: " if self.field else ""
        return _one_line(f"{where}{what}{_cap(self.message, MAX_MESSAGE)}")

    def located(
        self, source: str | None = None, line: int | None = None
    ) -> MaglevxError:
        """Return a copy that also names *source* and *line* (kept if set)."""
        return MaglevxError(
            self.message,
            source=self.source if self.source is not None else source,
            line=self.line if self.line is not None else line,
            field=self.field,
        )
