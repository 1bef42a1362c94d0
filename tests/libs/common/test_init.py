"""goalflow_common's curated surface: ``__all__`` names what services use, each resolves to
the object its module defines, and none is loaded before it is asked for."""

from __future__ import annotations

import subprocess
import sys

import pytest

import goalflow_common


@pytest.mark.parametrize("name", goalflow_common.__all__)
def test_every_exported_name_is_the_object_its_module_defines(name):
    value = getattr(goalflow_common, name)
    module = sys.modules[value.__module__]
    assert module.__name__.startswith("goalflow_common.")
    assert getattr(module, name) is value
    assert name in dir(goalflow_common)


def test_a_name_not_exported_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'EmbeddedMongo'"):
        goalflow_common.EmbeddedMongo  # noqa: B018 - the access is the test


def test_generated_code_alone_does_not_load_the_runtime():
    """The ``goalflow`` CLI imports goalflow_common.pb to answer --help: the re-exports must
    not pull pymongo and pydantic in with it (half a second), only when a name is used."""
    script = (
        "import sys\n"
        "import goalflow_common.pb.goals.v1.tracker_pb2\n"
        "print(sorted({'pymongo', 'pydantic', 'structlog'} & set(sys.modules)))\n"
        "import goalflow_common\n"
        "goalflow_common.ServiceSettings\n"
        "print(sorted({'pymongo', 'pydantic'} & set(sys.modules)))\n"
    )
    ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, check=True)
    assert ran.stdout.splitlines() == ["[]", "['pydantic']"]
