"""One exception type for bad user input, so the CLI can print it as one line and exit 2."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class InputError(Exception):
    """Bad input: names the file, the field path inside it, and the reason."""

    file: str
    field: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.field}" if self.field else self.file
        return f"{where}: {self.reason}"


@dataclass
class InputErrors(Exception):
    """Several input errors found in one file (pydantic reports them all at once)."""

    errors: list[InputError]

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)
