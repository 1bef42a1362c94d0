"""The real config + tracker stack of the tracker tests, for the shared clients tested here."""

from tests.services.tracker_svc.conftest import stack, tracker_db  # noqa: F401
