"""Rooms: the reference application, a chat backend built from handlers and models.

Read it as the pattern for your own handler modules (``docs/handlers.md``
walks through it):

==================  ===========================================================
``schemas.py``      one pydantic model per operation: validates WebSocket
                    commands and HTTP bodies, and feeds the OpenAPI document
``service.py``      rooms, members, read markers   } all the logic: permissions,
``messages.py``     messages, typing               } transactions, then pushes
``access.py``       what both services share: permission checks, pushes
``membership.py``   the members-only channel authorizer, cached per node and
                    invalidated on every node by a control message
``bodies.py``       message bodies at rest, encrypted when configured
``views.py``        channel names, JSON views, push events
``commands.py``     the WebSocket commands (thin) and their ``HANDLERS`` entries
``routes.py``       the HTTP routes (a table over the same services) and their OpenAPI
``settings.py``     the ``[rooms]`` section of ``config.toml``
``crypto.py``       AES-GCM with a key ring: encryption at rest, key rotation
``rekey.py``        re-encrypts stored bodies under the newest key
==================  ===========================================================

Models are in ``models/rooms.py``. Everything is registered in
``handlers.REGISTRY``; the server never imports this package.
"""
