"""goalflow_client: what people and other programs use to talk to the goalflow services.

``goalflow_client.cli`` is the ``goalflow`` command line; ``goalflow_client.producer`` the
reliable event producer (the CLI's ``events send``, the demo, benchmarks and fault tests).
Channels come from the runtime library (``goalflow_common.client.make_channel``), the same
ones the services use to call each other. Its own distribution, goalflow-client
(libs/client/pyproject.toml: click, rich, pyyaml, and the ``goalflow`` script), not in the image.
"""
