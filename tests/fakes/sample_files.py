"""Small files of each kind the bot reads, made in the test (no binary fixtures in the repository)."""

from __future__ import annotations

import io
import struct
import zlib

from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject


def png(pad: int = 0) -> bytes:
    """A valid 1x1 PNG; ``pad`` extra bytes in a private ancillary chunk make it as large as a test needs."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
    filler = chunk(b"tkPd", b"\0" * pad) if pad else b""
    pixels = chunk(b"IDAT", zlib.compress(b"\0\xff\x00\x00"))
    return b"\x89PNG\r\n\x1a\n" + header + filler + pixels + chunk(b"IEND", b"")


def jpeg() -> bytes:
    """The first bytes of a JPEG (SOI, APP0 JFIF): enough for the type, which is all the fakes look at."""
    return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\0" * 64 + b"\xff\xd9"


def pdf(text: str) -> bytes:
    """A one-page PDF whose text layer reads ``text`` (Helvetica; ASCII without parentheses)."""
    writer = PdfWriter()
    page = writer.add_blank_page(400, 100)
    font = DictionaryObject({NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
                             NameObject("/BaseFont"): NameObject("/Helvetica")})
    page[NameObject("/Resources")] = DictionaryObject(
        {NameObject("/Font"): DictionaryObject({NameObject("/F1"): writer._add_object(font)})})
    stream = DecodedStreamObject()
    stream.set_data(f"BT /F1 12 Tf 20 50 Td ({text}) Tj ET".encode("ascii"))
    page[NameObject("/Contents")] = writer._add_object(stream)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
