"""goalflow_common.limits: ``check_id`` passes an id of at most ``MAX_ID`` characters (empty
only when not required) and otherwise raises ``InvalidArgument`` naming the field, with the
wording every service answers; the module loads no gRPC or protobuf, so domain code can use
it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from goalflow_common.errors import InvalidArgument
from goalflow_common.limits import MAX_ID, check_id, check_printable

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


@pytest.mark.parametrize(("value", "refused_at"), [
    ("Acme Ltd", None),
    ("Ünïcødé, 日本語, emoji 👨\u200d👩\u200d👧", None),  # ZWJ joins emoji
    ("\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645", None),  # ZWNJ spells Persian
    ("tab\there", "U+0009 at position 3"),
    ("ok\x1b[2J\x1b[H\x1b[32mALL KEYS REVOKED", "U+001B at position 2"),  # Cc
    ("a\x00b", "U+0000 at position 1"),
    ("\x85next line", "U+0085 at position 0"),  # C1 control
    ("\u202eevil", "U+202E at position 0"),  # Cf: right-to-left override
    ("zero\u200bwidth", "U+200B at position 4"),  # Cf: zero-width space
    ("line\u2028sep", "U+2028 at position 4"),  # Zl
    ("para\u2029sep", "U+2029 at position 4"),  # Zp
])
def test_check_printable(value: str, refused_at: str | None):
    """I12-A5: key labels, account names and agent ids were stored with terminal escapes
    and bidi overrides, which the CLIs then printed raw."""
    if refused_at is None:
        assert check_printable("label", value) == value
        return
    with pytest.raises(InvalidArgument) as refused:
        check_printable("label", value)
    assert refused.value.field == "label"
    assert str(refused.value) == (
        f"label: control or format character {refused_at} is not allowed")
