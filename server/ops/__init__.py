"""Operations: what an operator reads off a running node.

==================  ===========================================================
``counters.py``     the node's plain counters and its latency histogram (a leaf)
``metrics.py``      ``GET /metrics``: Prometheus families read from the counters
``stats.py``        the live ``ops:stats`` feed behind the dashboard
``logs.py``         JSON log lines tagged with connection and request ids
``health.py``       ``GET /healthz`` and ``GET /readyz``
==================  ===========================================================
"""
