"""Accounts: who a client is.

==================  ===========================================================
``identity.py``     ``Identity``: who a verified token belongs to (a leaf)
``tokens.py``       signed, expiring tokens with key rotation (itsdangerous)
``passwords.py``    argon2id hashing, in a thread
``sessions.py``     ``Authenticator``: register, log in, refresh, log out, verify
``limiter.py``      failed-login limiting per IP and per username
``apikeys.py``      server API keys: configured or stored, compared in constant time
``routes.py``       the HTTP routes under ``/api/auth`` and ``/api/me``
==================  ===========================================================
"""
