"""Server-Sent Events: ``GET /sse`` streams the publications of channels, for one-way dashboards.

======================  ================================================================
module                  job
======================  ================================================================
``codec``               the pure codec: pushes → ``text/event-stream`` events, event ids
``connection``          ``SseConnection``: a node connection whose writer sends HTTP chunks
``tickets``             single-use tickets (``POST /api/sse/ticket``), the cookie session
``routes``              ``GET /sse`` and ``POST /api/sse/ticket``
======================  ================================================================

docs/http-api.md describes the stream.
"""
