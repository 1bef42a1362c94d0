"""Domain errors. Services raise these; one interceptor maps them to gRPC status codes."""

from __future__ import annotations

import grpc


class DomainError(Exception):
    """An error meant for the caller: a status code and a message that is safe to show."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(DomainError):
    """A field broke a rule. The message starts with the field's path."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.field = field
        self.rule = rule


class FailedPrecondition(DomainError):
    code = grpc.StatusCode.FAILED_PRECONDITION

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


class NotFound(DomainError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(DomainError):
    code = grpc.StatusCode.ALREADY_EXISTS

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.field = field


class Aborted(DomainError):
    """A concurrent change won; the caller may retry."""

    code = grpc.StatusCode.ABORTED


class Unauthenticated(DomainError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(DomainError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unavailable(DomainError):
    """A dependency is down for now; the caller should retry with backoff."""

    code = grpc.StatusCode.UNAVAILABLE


class ResourceExhausted(DomainError):
    """A request is larger than the method accepts; resending it cannot succeed."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
