"""Security headers on every response, set just before its headers go out.

Every response gets ``X-Content-Type-Options: nosniff``, a ``Referrer-Policy``
and a Content-Security-Policy that forbids framing (``frame-ancestors
'none'``, plus ``X-Frame-Options`` for older browsers). HTML pages (the demo,
the dashboard) get the full policy: scripts and styles only from this origin,
never inline, so an injected ``<script>`` does not run. When the server
itself serves TLS (``[server] tls_cert``), ``Strict-Transport-Security`` tells
browsers to use HTTPS from then on.
"""

from __future__ import annotations

from aiohttp import web

#: The policy of HTML pages: nothing inline, nothing from elsewhere.
PAGE_POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))
#: The policy of everything else (JSON, the browser client's modules).
DEFAULT_POLICY = "default-src 'none'; frame-ancestors 'none'"
HSTS = "max-age=31536000; includeSubDomains"


async def set_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare`` hook: add the headers unless the handler set its own."""
    if response.status == 304:
        # A 304's headers replace the cached response's, and a 304 names no
        # content type: the page's policy stays the one it was served with.
        return
    if response.status == 101:
        # A WebSocket upgrade is no document for a browser to render, frame or
        # sniff, and these headers would be kept for the connection's life.
        return
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("X-Frame-Options", "DENY")
    html = (response.content_type or "").startswith("text/html")
    headers.setdefault("Content-Security-Policy", PAGE_POLICY if html else DEFAULT_POLICY)
    if request.secure:
        headers.setdefault("Strict-Transport-Security", HSTS)
