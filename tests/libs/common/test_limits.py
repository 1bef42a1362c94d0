"""goalflow_common.limits: ``check_id`` passes an id of at most ``MAX_ID`` characters (empty
only when not required) and otherwise raises ``InvalidArgument`` naming the field, with the
wording every service answers; the module loads no gRPC or protobuf, so domain code can use
it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from goalflow_common.errors import InvalidArgument
from goalflow_common.limits import MAX_ID, check_id

TOO_LONG = f"at most {MAX_ID} characters"


@pytest.mark.parametrize(("value", "required", "refusal"), [
    ("g1", True, None),
    ("g1", False, None),
    ("x" * MAX_ID, True, None),
    ("é" * MAX_ID, True, None),  # characters, not bytes
    ("", False, None),
    ("", True, "required"),
    ("x" * (MAX_ID + 1), True, TOO_LONG),
    ("x" * (MAX_ID + 1), False, TOO_LONG),
    ("x" * 10_000, True, TOO_LONG),
])
def test_check_id(value: str, required: bool, refusal: str | None):
    if refusal is None:
        assert check_id("goal_ids[3]", value, required=required) == value
        return
    with pytest.raises(InvalidArgument) as err:
        check_id("goal_ids[3]", value, required=required)
    assert (err.value.field, err.value.rule) == ("goal_ids[3]", refusal)
    assert err.value.message == f"goal_ids[3]: {refusal}"


def test_required_is_the_default():
    with pytest.raises(InvalidArgument, match=r"^export_id: required$"):
        check_id("export_id", "")


def test_limits_load_no_grpc_or_protobuf():
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, goalflow_common.limits; "
         "print(sorted(m for m in sys.modules if m.startswith(('grpc', 'google'))))"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout.strip()
    assert loaded == "[]"
