"""The ``stagewire`` command line: ``main.py`` parses, one module per group of subcommands.

==================  ===========================================================
``main.py``         the parser, ``migrate``, one-line errors
``serve.py``        ``serve``: one process, or ``--workers N`` sharing a port
``admin.py``        ``user`` and ``apikey``, on the database
``client.py``       ``publish`` and ``tail``, through the server's APIs
``bench.py``        ``bench``: a load scenario from ``bench/``
==================  ===========================================================
"""
