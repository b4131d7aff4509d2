"""Name resolution for webhook targets, behind a Protocol so the guard can be tested."""

from __future__ import annotations

from typing import Protocol


class Resolver(Protocol):
    async def resolve(self, host: str, port: int) -> list[str]:
        """Every address ``host`` resolves to, sorted; empty when it does not resolve (or
        the lookup takes too long). Never raises for a bad or unknown name."""
        ...

    async def aclose(self) -> None: ...
