"""Command-line front ends for people: the developer stack (``make run``) and key admin.
They print plain text for a person; the services themselves only log (structlog)."""
