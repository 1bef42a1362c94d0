"""The one place failures become a line on stderr and an exit code.

Exit codes (documented in ``goalflow --help`` and the README):

    0  done
    1  the command ran but the outcome is a failure (rejected events, a failed export)
    2  usage error (a bad flag or value; click's own code)
    3  the request was refused: invalid argument, not found, already exists, failed
       precondition, or a broken input file
    4  authentication or permission: no key, a malformed or unknown key, the wrong role
    5  a service is unavailable or did not answer in time
    6  any other server error
  130  interrupted (Ctrl-C)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import click
import grpc

EXIT_FAILED = 1
EXIT_REFUSED = 3
EXIT_AUTH = 4
EXIT_UNAVAILABLE = 5
EXIT_SERVER = 6
EXIT_INTERRUPTED = 130

_EXIT_BY_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: EXIT_REFUSED,
    grpc.StatusCode.NOT_FOUND: EXIT_REFUSED,
    grpc.StatusCode.ALREADY_EXISTS: EXIT_REFUSED,
    grpc.StatusCode.FAILED_PRECONDITION: EXIT_REFUSED,
    grpc.StatusCode.OUT_OF_RANGE: EXIT_REFUSED,
    grpc.StatusCode.UNAUTHENTICATED: EXIT_AUTH,
    grpc.StatusCode.PERMISSION_DENIED: EXIT_AUTH,
    grpc.StatusCode.UNAVAILABLE: EXIT_UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: EXIT_UNAVAILABLE,
}


class CliError(click.ClickException):
    """Shown by click as ``error: <message>`` on stderr; exits with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: object = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def exit_code_for(code: grpc.StatusCode | None) -> int:
    """The exit code of a gRPC status; a failure without one counts as unavailable."""
    if code is None:
        return EXIT_UNAVAILABLE
    return _EXIT_BY_STATUS.get(code, EXIT_SERVER)


def rpc_error(what: str, error: grpc.RpcError) -> CliError:
    """``<what>: <STATUS>: <details>`` with the exit code of the status."""
    code = error.code() if callable(getattr(error, "code", None)) else None
    if code is None:  # a bare RpcError raised before any call completed
        return CliError(f"{what}: {error}", EXIT_SERVER)
    details = (error.details() or "").strip() or "(no details)"
    return CliError(f"{what}: {code.name}: {details}", exit_code_for(code))


@contextlib.contextmanager
def failing_as(what: str) -> Iterator[None]:
    """Turn a gRPC failure inside the block into the one-line error naming ``what``."""
    try:
        yield
    except grpc.RpcError as exc:
        raise rpc_error(what, exc) from None
