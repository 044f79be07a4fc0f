"""Upstream answers with a ``Content-Encoding``: decoded (gzip, deflate) or refused (502).

The core asks for ``Accept-Encoding: identity``, but some upstreams and load balancers compress
anyway. Relaying those bytes would hand clients a body that no longer matches its headers (the
header is not relayed), so a gzip or deflate body is decoded here, in bounded steps so that a
small compressed answer cannot grow past the caller's limit in one go; any other encoding is an
:class:`~hookproxy.UpstreamUnreachable` (502, failed over like any broken answer).
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Mapping

from .errors import UpstreamUnreachable

#: zlib window settings per encoding name (gzip header; zlib header, as HTTP's "deflate" means).
_WBITS = {"gzip": 31, "x-gzip": 31, "deflate": 15}
#: The most decoded bytes produced per step (a decompression bomb is read in slices).
STEP = 1024 * 1024


class Decoder:
    """Decodes one answer's body, chunk by chunk."""

    def __init__(self, backend: str, encoding: str) -> None:
        self.backend = backend
        self.encoding = encoding
        self._zlib = zlib.decompressobj(_WBITS[encoding])

    def feed(self, data: bytes) -> list[bytes]:
        """The decoded bytes of ``data``, in slices of at most :data:`STEP` bytes."""
        pieces: list[bytes] = []
        try:
            piece = self._zlib.decompress(data, STEP)
            while piece:
                pieces.append(piece)
                tail = self._zlib.unconsumed_tail
                piece = self._zlib.decompress(tail, STEP) if tail else b""
        except zlib.error as exc:
            raise self._broken(exc) from exc
        return pieces

    def finish(self) -> bytes:
        try:
            return self._zlib.flush()
        except zlib.error as exc:
            raise self._broken(exc) from exc

    async def stream(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            for piece in self.feed(chunk):
                yield piece
        tail = self.finish()
        if tail:
            yield tail

    def _broken(self, exc: Exception) -> UpstreamUnreachable:
        return UpstreamUnreachable(f"backend {self.backend!r} sent a broken {self.encoding} body: {exc}",
                                   backend=self.backend)


def decoder_for(backend: str, headers: Mapping[str, str]) -> Decoder | None:
    """``None`` for an unencoded answer, a :class:`Decoder` for gzip/deflate; else a 502."""
    encoding = (headers.get("content-encoding") or "").strip().lower()
    if not encoding or encoding == "identity":
        return None
    if encoding in _WBITS:
        return Decoder(backend, encoding)
    raise UpstreamUnreachable(
        f"backend {backend!r} answered with Content-Encoding {encoding!r}, which hookproxy cannot decode "
        "(it asks for identity; gzip and deflate are decoded)", backend=backend)
