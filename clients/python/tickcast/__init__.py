"""tickcast: a client for the tickcast market-data server (docs/PROTOCOL.md, v1)."""

from .book import Book, book_checksum, checksum_text, plain_number
from .client import Ack, Client, connect
from .errors import ClientClosed, HandshakeRefused, ProblemError, ProtocolViolation, ServerError, TickcastError
from .events import Bar, BookUpdate, Gap, Indicators, Portfolio, Position, Reset, Snapshot, Tick, Unknown
from .rest import Rest

__all__ = [
    "Ack", "Bar", "Book", "BookUpdate", "Client", "ClientClosed", "Gap", "HandshakeRefused", "Indicators",
    "Portfolio", "Position", "ProblemError", "ProtocolViolation", "Reset", "Rest", "ServerError", "Snapshot",
    "Tick", "TickcastError", "Unknown", "book_checksum", "checksum_text", "connect", "plain_number",
]
__version__ = "0.1.0"
