"""uvicorn's HTTP/1.1 protocol with a time limit on a client that keeps the server waiting.

uvicorn closes an idle keep-alive connection, but has no limit on a client that sends its request's headers a byte at
a time (slowloris), nor on one that trickles the rest of a body the app answered without reading it: either holds its
connection for ever. serve.py bounds the body it reads itself (and answers 408); this bounds the rest.
"""
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("serve")


class DeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol, whose connection is closed once the server has waited `request_timeout` seconds on
    the client alone: for a request's headers (since the connection opened, or since the previous answer), or for
    the rest of a body already answered. The clock does not restart with each byte, so a byte now and then buys
    nothing. Passed to uvicorn as `uvicorn.Config(http=functools.partial(DeadlineProtocol, request_timeout=30))`."""

    def __init__(self, *args, request_timeout, **kwargs):
        super().__init__(*args, **kwargs)
        self.request_timeout = request_timeout
        self.deadline = None

    def connection_made(self, transport):
        super().connection_made(transport)
        self.watch()

    def data_received(self, data):
        super().data_received(data)
        self.watch()

    def on_response_complete(self):
        super().on_response_complete()
        self.watch()

    def connection_lost(self, exc):
        self.stop_clock()
        super().connection_lost(exc)

    def waiting_on_client(self):
        """Whether nothing but the client can move this connection on: no request begun or its headers incomplete
        (h11's IDLE), or the answer sent while the body still arrives. While the app reads a body, it keeps time."""
        theirs = self.conn.their_state
        return theirs is h11.IDLE or (theirs is h11.SEND_BODY and self.conn.our_state is h11.DONE)

    def watch(self):
        if self.waiting_on_client() and not self.transport.is_closing():
            if self.deadline is None:
                self.deadline = self.loop.call_later(self.request_timeout, self.expire)
        else:
            self.stop_clock()

    def stop_clock(self):
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def expire(self):
        self.deadline = None
        if self.transport.is_closing():
            return
        if self.conn.their_state is h11.SEND_BODY or self.conn.trailing_data[0]:  # not merely an idle connection
            client = "%s:%d" % self.client if self.client else "a client"
            log.info("closed the connection from %s: its request did not arrive within %g s (--request_timeout)",
                     client, self.request_timeout)
        self.transport.close()
