"""Domain errors name their gRPC status codes as strings (errors.py loads no gRPC); every
name must be a ``grpc.StatusCode`` member, or the interceptor's lookup would fail at the
moment the error is raised."""

from __future__ import annotations

import typing

import grpc

from goalflow_common import errors


def _kinds(cls: type[errors.DomainError]) -> list[type[errors.DomainError]]:
    return [cls] + [kind for sub in cls.__subclasses__() for kind in _kinds(sub)]


def test_every_error_kind_names_a_grpc_status_code():
    kinds = _kinds(errors.DomainError)
    assert len(kinds) >= 10  # DomainError and its nine kinds in errors.py at least
    for kind in kinds:
        assert grpc.StatusCode[kind.code].name == kind.code, kind


def test_every_allowed_code_name_is_a_grpc_status_code():
    for name in typing.get_args(errors.CodeName):
        assert grpc.StatusCode[name].name == name
