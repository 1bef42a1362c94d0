"""The tracker's store: every MongoDB query, behind named methods (``tracker_store``); the
stored documents and their mapping to the model (``documents``); what the domain needs of
it, as Protocols (``protocols``); the time-windowed reads a stream is made of
(``windows``)."""
