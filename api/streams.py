"""Streamed bodies made by the synchronous core: every step in a worker thread, the last one
too, and the last one always.

Starlette runs a plain iterator's ``next`` in its thread pool, but when the client goes away
it stops asking and leaves the iterator to the garbage collector: the generator's
``finally`` (a bulk download audits there which keys left) would run late, or on the event
loop. ``ClosingStream`` closes its body when the response ends, however it ends, and
``in_threads`` runs that close in a worker thread, shielded from the cancellation that
ended the stream.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterator, Mapping

import anyio
import anyio.to_thread
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send


async def in_threads(chunks: Iterator[bytes]) -> AsyncGenerator[bytes, None]:
    try:
        while (chunk := await anyio.to_thread.run_sync(next, chunks, None)) is not None:
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(close)


class ClosingStream(StreamingResponse):
    """A streamed response over ``in_threads(chunks)`` that closes it when it ends."""

    def __init__(self, chunks: Iterator[bytes], *, media_type: str,
                 headers: Mapping[str, str]) -> None:
        self._body = in_threads(chunks)
        super().__init__(self._body, media_type=media_type, headers=headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._body.aclose()
