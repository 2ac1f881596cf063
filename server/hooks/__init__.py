"""Backend hooks: signed webhooks from a durable outbox, and proxies that let a backend decide.

The part's modules, and what they may touch::

    base.py                 the contracts the core talks to: EventSink (the node emits
                            through it) and Proxy (the handshake and handlers ask it);
                            do-nothing defaults for a node without hooks
    events.py               HookEvents, the EventSink: event shapes, webhook routing,
                            feeding the cluster transitions
    transitions.py          channel_occupied/vacated and member_added/removed: local counts,
                            the TransitionStore contract, ordered store calls, grace settling
    transitions_memory.py   MemoryTransitions (one node)
    transitions_redis.py    RedisTransitions (a cluster: Lua, one hash slot per channel)
    outbox.py               Outbox: group-committed rows, the dead letters, leases
    sender.py               WebhookSender: one loop per webhook (a Destination: name, URL,
                            signature), batches, retries, backoff
    signing.py              the HMAC-SHA256 signature of a body (pure)
    http.py                 BackendHttp: the one pooled aiohttp ClientSession, latency and failures
    proxy.py                BackendProxy: connect, refresh, subscribe, publish and rpc calls
    commands.py             the ``rpc`` command
    routes.py               the server API's /api/webhooks routes
    metrics.py              what /metrics shows of all this
    service.py              Hooks: builds the part from the settings; started by app.py

The node knows only :mod:`server.hooks.base`; nothing here is imported by
the hub, and the node never sees HTTP.
"""
