"""The HTTP/1.1 protocol the store serves: uvicorn's h11 protocol, answering a body cut short with a 400.

uvicorn already answers framing h11 refuses (a chunk size that is not hex or
longer than 20 digits) with a 400 and closes. But a client that ends its side
of the connection (a half-close) before the body its ``Content-Length`` or
chunks promised got no answer at all: uvicorn closed at the end of input
without telling h11. Here h11 is told, finds the body short, and uvicorn
answers that with the same 400. The app sees the connection end and counts a
400 (``store.body_limit``).
"""

from __future__ import annotations

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


class StoreHttpProtocol(H11Protocol):
    def eof_received(self) -> None:
        if self.conn.their_state is h11.SEND_BODY and self.conn.our_state is h11.SEND_RESPONSE:
            self.conn.receive_data(b"")
            # h11 raises on the short body; uvicorn's handler writes its 400 and closes the transport.
            self.handle_events()
