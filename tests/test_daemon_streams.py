"""The daemon's stream pieces: docker's multiplexed framing, and following
a container's log across a rotation (the shim's --log-opt max-size)."""

from __future__ import annotations

import asyncio
import json
import os
import struct
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from nsprim.daemon.streams import entry_bytes, follow_log, frame, poll_delay


def _unframe(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    while data:
        stream, size = struct.unpack(">BxxxL", data[:8])
        out.append((stream, data[8:8 + size]))
        data = data[8 + size:]
    return out


@given(st.lists(st.tuples(st.sampled_from([1, 2]), st.binary(max_size=300)), max_size=20))
def test_frames_decode_to_what_was_written(chunks: list[tuple[int, bytes]]) -> None:
    wire = b"".join(frame(s, d) for s, d in chunks)
    assert _unframe(wire) == chunks
    assert len(wire) == sum(8 + len(d) for _, d in chunks)


def test_entry_bytes_streams_and_timestamps() -> None:
    e = {"time": "2026-11-28T00:00:00.000000001Z", "stream": "stderr", "log": "é\n"}
    assert entry_bytes(e) == (2, "é\n".encode())
    assert entry_bytes(dict(e, stream="stdout"), True) == (
        1, b"2026-11-28T00:00:00.000000001Z \xc3\xa9\n")


class _Rec:
    def __init__(self, d: Path) -> None:
        self.log_path = str(d / "container.log")


def _line(text: str) -> str:
    return json.dumps({"time": "t", "stream": "stdout", "log": text}) + "\n"


def test_follow_continues_across_a_rotation(tmp_path: Path) -> None:
    rec = _Rec(tmp_path)
    Path(rec.log_path).write_text(_line("a") + _line("b"))
    done = {"ended": False}

    async def main() -> list[str]:
        got: list[str] = []

        async def writer() -> None:
            await asyncio.sleep(0.05)
            with open(rec.log_path, "a") as f:
                f.write(_line("c"))
            os.rename(rec.log_path, rec.log_path + ".1")  # the shim's rotation
            await asyncio.sleep(0.05)
            Path(rec.log_path).write_text(_line("d"))
            await asyncio.sleep(0.05)
            done["ended"] = True

        task = asyncio.create_task(writer())
        async for e in follow_log(rec, 0, lambda: done["ended"]):  # type: ignore[arg-type]
            got.append(e["log"])
        await task
        return got

    assert asyncio.run(main()) == ["a", "b", "c", "d"]


def test_poll_delay_is_short_first() -> None:
    import time

    now = time.monotonic()
    assert poll_delay(now) == 0.001
    assert poll_delay(now - 5) == 0.01
    assert poll_delay(now - 60) == 0.05
