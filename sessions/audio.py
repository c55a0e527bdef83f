"""The web client's audio: Opus "Plan A", a run of Opus packets each preceded by its length as a 2-byte
little-endian integer, 16 kHz mono, 20 ms per packet (webapp/web-client/src/websocket/audio_sender.ts)."""

from __future__ import annotations

FORMAT = "opus"
SAMPLE_RATE = 16_000
PACKET_MS = 20
# The old server's estimate for audio that is not Plan A: 60 bytes per 20 ms packet (24 kbps).
BYTES_PER_PACKET_ESTIMATE = 60


def plan_a_packets(payload: bytes) -> int | None:
    """How many packets `payload` holds, or None when it is not a whole run of length-prefixed packets."""
    count, offset, size = 0, 0, len(payload)
    while offset < size:
        if offset + 2 > size:
            return None
        length = payload[offset] | (payload[offset + 1] << 8)
        offset += 2 + length
        if length == 0 or offset > size:
            return None
        count += 1
    return count


def duration_ms(payload: bytes) -> int:
    """The audio length of one chunk: exact for Plan A (20 ms a packet), else the old byte estimate."""
    packets = plan_a_packets(payload)
    if packets is None:
        return len(payload) * PACKET_MS // BYTES_PER_PACKET_ESTIMATE
    return packets * PACKET_MS


def plan_a(packets: list[bytes]) -> bytes:
    """Packets framed as Plan A (for simulated clients and tests)."""
    return b"".join(len(packet).to_bytes(2, "little") + packet for packet in packets)
