"""Stagewire's Python client: a WebSocket SDK and a server-API client.

    from stagewire_client import Client

    async with Client("ws://127.0.0.1:8080/ws", token=token) as client:
        async for pub in client.subscribe("news:main"):
            print(pub.data)

See docs/client-python.md.
"""

from stagewire_client.api import BroadcastResult, ServerAPI
from stagewire_client.auth import Login, login, login_token, refresh_token
from stagewire_client.client import Client, TokenProvider
from stagewire_client.errors import (
    CannotConnect,
    ClientError,
    CloseCode,
    Disconnected,
    ErrorCode,
    ProtocolViolation,
    StagewireError,
    UnsubscribeCode,
    should_reconnect,
    should_resubscribe,
)
from stagewire_client.protocol import (
    ConnectInfo,
    Encoding,
    History,
    Position,
    PresenceEvent,
    PresenceStats,
    Publication,
)
from stagewire_client.subscription import Subscription

__all__ = [
    "BroadcastResult", "CannotConnect", "Client", "ClientError", "CloseCode", "ConnectInfo",
    "Disconnected", "Encoding", "ErrorCode", "History", "Login", "Position", "PresenceEvent",
    "PresenceStats", "ProtocolViolation", "Publication", "ServerAPI", "StagewireError",
    "Subscription", "TokenProvider", "UnsubscribeCode", "login", "login_token", "refresh_token",
    "should_reconnect", "should_resubscribe",
]
