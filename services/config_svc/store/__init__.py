"""Goal storage: the ``GoalStore`` protocol the domain talks to (``protocols``) and its
MongoDB implementation (``mongo``, imported by the server wiring only)."""

from config_svc.store.protocols import DuplicateName, GoalStore

__all__ = ["DuplicateName", "GoalStore"]
