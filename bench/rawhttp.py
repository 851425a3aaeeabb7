"""A minimal keep-alive HTTP/1.1 client on asyncio streams, for the load benchmarks.

On a 2-core machine the load generator competes with the API for the same CPUs; httpx's
async pool spends several times the CPU of the request itself at 64 connections (its own
locks and bookkeeping), so a benchmark using it measures the client. This sends GETs over
one connection each, reads status, headers and a Content-Length body, and nothing else.
"""

from __future__ import annotations

import asyncio


class Connection:
    """One keep-alive connection; ``get`` returns (status, headers, body). Not for sharing
    between tasks at once."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host, self.port = host, port
        self.base = "".join(
            f"{k}: {v}\r\n" for k, v in {"Host": f"{host}:{port}", **headers}.items()
        )
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None

    async def get(
        self, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        if self.writer is None:
            await self._open()
        assert self.reader is not None and self.writer is not None
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.writer.write(f"GET {path} HTTP/1.1\r\n{self.base}{extra}\r\n".encode())
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            await self.close()
            raise ConnectionError("connection closed by the server") from None
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        parsed: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                parsed[name.strip().lower()] = value.strip()
        length = int(parsed.get("content-length", "0"))
        body = await self.reader.readexactly(length) if length else b""
        if parsed.get("connection", "").lower() == "close":
            await self.close()
        return status, parsed, body
