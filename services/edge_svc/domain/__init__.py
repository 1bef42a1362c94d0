"""The edge's rules with no transport: which RPCs a browser may reach and where they go
(``routes``), the CORS decision (``cors``) and the caller check made before a body is read
(``caller``)."""
