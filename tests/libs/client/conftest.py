"""The real config + tracker stack of the tracker tests, for the producer tested here."""

from tests.services.tracker_svc.conftest import stack, tracker_db  # noqa: F401
