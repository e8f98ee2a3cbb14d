"""TFRecord files read in place: each record's payload offset and length from the file's own framing (u64 length,
u32 masked CRC-32C of it, data, u32 CRC), without TensorFlow, so a reader can fetch just the records a batch needs;
and records framed the same way, for TensorBoard's event files."""
import io
import mmap
import os
import struct

import numpy as np

from support.errors import UserError


def crc32c_table():
    table = np.zeros(256, dtype=np.uint32)
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table[n] = c
    return table


def masked_crc32c(rows):
    """TFRecord's masked CRC-32C of each row of a uint8 array, vectorised over rows."""
    table = crc32c_table()
    crc = np.full(len(rows), 0xFFFFFFFF, dtype=np.uint32)
    for column in rows.T:
        crc = table[(crc ^ column) & 0xFF] ^ (crc >> np.uint32(8))
    crc ^= np.uint32(0xFFFFFFFF)
    return (((crc >> np.uint32(15)) | (crc << np.uint32(17))) + np.uint32(0xA282EAD8)).astype(np.uint32)


def walk_records(path):
    """(offset, length) of every record's payload, from the framing: u64 length, u32 CRC, data, u32 CRC.

    Length checksums are verified for all records at once (vectorised), and first of all when the walk
    runs off the end, so a damaged length is reported as corruption at its own offset."""
    size = os.path.getsize(path)
    starts, headers, position = [], [], 0
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else io.BytesIO() as data:
        while position < size:
            header = data[position:position + 12]
            length = struct.unpack("<Q", header[:8])[0] if len(header) == 12 else 0
            if position + 16 + length > size:
                check_lengths(path, starts + [position], headers + [header.ljust(12, b"\0")])
                raise UserError(f"truncated TFRecord file {path} at offset {position}: the record "
                                f"runs past the end of the file ({size} bytes)")
            starts.append(position)
            headers.append(header)
            position += 16 + length
    lengths = check_lengths(path, starts, headers)
    return np.array(starts, dtype=np.int64) + 12, lengths


def check_lengths(path, starts, headers):
    """The records' lengths, after checking each against its masked CRC-32C."""
    if not headers:
        return np.zeros(0, dtype=np.int64)
    headers = np.frombuffer(b"".join(headers), dtype=np.uint8).reshape(-1, 12)
    bad = np.flatnonzero(masked_crc32c(headers[:, :8]) != headers[:, 8:].copy().view("<u4")[:, 0])
    if len(bad):
        raise UserError(f"corrupted TFRecord file {path} at offset {starts[bad[0]]}: length checksum mismatch")
    return headers[:, :8].copy().view("<u8")[:, 0].astype(np.int64)


def framed(payload):
    """One record as a TFRecord file holds it: u64 length, its masked CRC-32C, the payload, the payload's."""
    length = struct.pack("<Q", len(payload))
    crcs = [masked_crc32c(np.frombuffer(part, dtype=np.uint8)[None])[0] for part in (length, payload)]
    return length + struct.pack("<I", crcs[0]) + payload + struct.pack("<I", crcs[1])
