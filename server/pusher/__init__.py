"""The Pusher Channels protocol (v7) as a shell over the same node.

A Pusher connection is a :class:`~server.connection.Connection` of the node
(``PusherConnection``), subscribed through the same hub, broker and presence
store as a native one; a Pusher channel ``X`` of an app is the Stagewire
channel ``<namespace>:X``. docs/pusher.md is the manual.

=================  =====================================================================
module             job
=================  =====================================================================
``protocol``       the pure codec: client events in, Pusher events out, Stagewire pushes
                   translated (the hub's ``PUSHER`` encoding), names, close codes
``signing``        pure HMAC checks: channel auth, user sign-in, HTTP API requests
``apps``           the configured apps (``[[pusher.apps]]``), looked up by key and id
``connection``     ``PusherConnection``: one frame per event, socket exclusion, close codes
``members``        presence members, occupancy and connection counts in the presence store
``events``         the seam for webhooks: ``PusherEvents.emit`` (channel_occupied, ...)
``webhooks``       ``PusherWebhooks``: those events into the hooks outbox, Pusher's signature
``service``        the node's Pusher state: apps, connections by user, the refresh task
``channels``       what a connection may send: subscribe, unsubscribe, sign-in, client events
``websocket``      ``GET /app/{key}``: refusals, handshake, read loop, cleanup
``http_api``       the HTTP API with Pusher's request signature
``auth``           ``POST /pusher/auth``: signatures for Stagewire accounts
=================  =====================================================================
"""
