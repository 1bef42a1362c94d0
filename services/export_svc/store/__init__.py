"""Export storage: ``JobStore``/``FileStore`` (``protocols``) in MongoDB (``jobs``, ``files``)."""
