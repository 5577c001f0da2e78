"""Token reader: the RFID/NFC card reader a driver taps to start or stop charging.

A reader reports each *presentation*: a card that enters the field is reported
once, however long it stays; it is reported again only after it has left. The
identifier is the card's ISO/IEC 14443 UID, which OCPP carries as an idToken of
type ISO14443 (hexadecimal, 4 or 7 bytes; 10-byte UIDs exist too).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class CardPresented:
    uid: bytes  # ISO/IEC 14443-3 UID (NFCID1) as read

    @property
    def id_token(self) -> str:
        """OCPP IdTokenEnumType ISO14443: the UID in upper-case hexadecimal."""
        return self.uid.hex().upper()


class TokenReader(Protocol):
    async def open(self) -> None:
        """Open the link and configure the reader; HalInitError if it does not answer."""

    async def close(self) -> None:
        """Idempotent."""

    async def read_card(self) -> CardPresented:
        """Wait for the next card presented (HalOperationError / HalTimeoutError on a
        broken link; the caller may close and open again)."""
