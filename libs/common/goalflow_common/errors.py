"""Domain errors. Services raise these; one interceptor maps them to gRPC status codes.

Each kind names its status code as a string (the name of a ``grpc.StatusCode`` member), so
domain code can raise them without loading gRPC; ``interceptors.py`` turns the name into
the code.
"""

from __future__ import annotations

from typing import Literal

CodeName = Literal[
    "UNKNOWN", "INVALID_ARGUMENT", "FAILED_PRECONDITION", "NOT_FOUND", "ALREADY_EXISTS",
    "ABORTED", "UNAUTHENTICATED", "PERMISSION_DENIED", "UNAVAILABLE", "RESOURCE_EXHAUSTED",
]


class DomainError(Exception):
    """An error meant for the caller: a status code name and a message that is safe to show."""

    code: CodeName = "UNKNOWN"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(DomainError):
    """A field broke a rule. The message starts with the field's path."""

    code: CodeName = "INVALID_ARGUMENT"

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.field = field
        self.rule = rule


class FailedPrecondition(DomainError):
    code: CodeName = "FAILED_PRECONDITION"

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


class NotFound(DomainError):
    code: CodeName = "NOT_FOUND"


class AlreadyExists(DomainError):
    code: CodeName = "ALREADY_EXISTS"

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.field = field


class Aborted(DomainError):
    """A concurrent change won; the caller may retry."""

    code: CodeName = "ABORTED"


class Unauthenticated(DomainError):
    code: CodeName = "UNAUTHENTICATED"


class PermissionDenied(DomainError):
    code: CodeName = "PERMISSION_DENIED"


class Unavailable(DomainError):
    """A dependency is down for now; the caller should retry with backoff."""

    code: CodeName = "UNAVAILABLE"


class ResourceExhausted(DomainError):
    """A request is larger than the method accepts; resending it cannot succeed."""

    code: CodeName = "RESOURCE_EXHAUSTED"
