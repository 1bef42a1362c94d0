"""goalflow_dev: developer tooling, never part of a service process or the production image.

``devstack`` (``make run``) and ``demo`` (``make demo``) run the whole system on one
machine; ``embedded_mongo`` (nx-27017 as a subprocess), ``smtp_sink``, ``processes`` and
``parent_death`` are the parts they, the tests and the benchmarks share. Its own
distribution, goalflow-devtools (libs/devtools/pyproject.toml: nx-27017, aiosmtpd, and
goalflow-client, since the demo runs the CLI), which the image's Dockerfile never copies.
"""
