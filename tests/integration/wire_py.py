# SPDX-License-Identifier: MIT
"""An independent reader and writer of archive files (doc/wire-format.md), in
plain Python, for tests that check what the C code wrote or feed it input it
cannot produce itself.  Written from the specification, not from the C codec,
so the two check each other.  zstd payloads are inflated with the zstd
command-line tool, or where it is missing (the GPU machine) with libzstd
through ctypes; frames written here are stored uncompressed (flag bit 0
clear), which the format allows."""

import ctypes
import ctypes.util
import struct
import subprocess
import time

FRAME_MAGIC = b"FMUw"
ARCHIVE_MAGIC = b"MFUArch1"

# Field names per record type, in wire order; "d" marks a delta field, "z" a
# zigzag one, "s" a string, "v" a plain varint.  Durations are turned into
# end times after decoding.
FIELDS = {
    3: ("kernel", [("start_ns", "dz"), ("dur", "v"), ("device", "v"), ("stream", "v"), ("name_id", "v"),
                   ("corr", "dz"), ("call", "v"), ("flags", "v"), ("flops", "v")]),
    4: ("gemm", [("start_ns", "dz"), ("dur", "v"), ("tid", "v"), ("device", "v"), ("api", "v"), ("m", "v"),
                 ("n", "v"), ("k", "v"), ("batch", "v"), ("a_type", "v"), ("b_type", "v"), ("c_type", "v"),
                 ("compute_type", "v"), ("ops", "v"), ("flags", "v"), ("flops", "v"), ("call", "dz")]),
    5: ("step", [("begin_ns", "v"), ("dur", "v"), ("index", "v"), ("device", "v"), ("model_flops", "v"),
                 ("model_class", "v")]),
    6: ("api", [("start_ns", "dz"), ("dur", "v"), ("tid", "v"), ("cbid", "v"), ("corr", "dz"), ("kind", "v")]),
    10: ("copy", [("start_ns", "v"), ("dur", "v"), ("device", "v"), ("stream", "v"), ("op", "v"), ("kind", "v"),
                  ("bytes", "v"), ("corr", "v")]),
    11: ("offcpu", [("start_ns", "v"), ("dur", "v"), ("tid", "v"), ("state", "v"), ("stack_id", "v")]),
    2: ("string", [("id", "v"), ("text", "s")]),
}


def _crc32c_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


_T = _crc32c_table()


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = _T[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def zigzag(v):
    return (v << 1) ^ (v >> 63) if v >= 0 else ((v << 1) ^ -1) & 0xFFFFFFFFFFFFFFFF


def _read_varint(buf, i):
    v = shift = 0
    while True:
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return v, i


def _unzigzag(v):
    return (v >> 1) ^ -(v & 1)


def decode_payload(raw):
    """Records of one payload as dicts with a "type" name; deltas resolved."""
    recs, i, base = [], 0, {}
    while i < len(raw):
        typ, i = _read_varint(raw, i)
        blen, i = _read_varint(raw, i)
        body, i = raw[i:i + blen], i + blen
        if typ not in FIELDS:
            recs.append({"type": typ})
            continue
        name, fields = FIELDS[typ]
        r, j = {"type": name}, 0
        for fname, enc in fields:
            if j >= len(body):
                break  # an appended field an older producer did not write
            if enc == "s":
                n, j = _read_varint(body, j)
                r[fname] = bytes(body[j:j + n])
                j += n
                continue
            v, j = _read_varint(body, j)
            if "z" in enc:
                v = _unzigzag(v)
            if "d" in enc:
                v += base.get((typ, fname), 0)
                base[(typ, fname)] = v
            r[fname] = v
        if "dur" in r:
            r["end_ns"] = r.get("start_ns", r.get("begin_ns", 0)) + r.pop("dur")
        recs.append(r)
    return recs


def _inflate_libzstd(payload, rawlen):
    name = ctypes.util.find_library("zstd") or "libzstd.so.1"
    lib = ctypes.CDLL(name)
    lib.ZSTD_decompress.restype = ctypes.c_size_t
    lib.ZSTD_decompress.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t)
    lib.ZSTD_isError.restype = ctypes.c_uint
    lib.ZSTD_isError.argtypes = (ctypes.c_size_t,)
    dst = ctypes.create_string_buffer(max(1, rawlen))
    src = bytes(payload)
    n = lib.ZSTD_decompress(dst, rawlen, src, len(src))
    if lib.ZSTD_isError(n):
        raise ValueError("libzstd: cannot inflate a payload of %d bytes" % len(src))
    return dst.raw[:n]


def inflate(payload, rawlen, cli=True):
    """A zstd payload inflated: by the zstd tool, else (not installed, or
    cli False) by libzstd."""
    if cli:
        try:
            return subprocess.run(["zstd", "-d", "-c", "-q"], input=payload, capture_output=True,
                                  check=True).stdout
        except FileNotFoundError:
            pass
    return _inflate_libzstd(payload, rawlen)


def read_archive(path):
    """All records of an archive file, frame by frame; raises on a bad frame."""
    data = open(path, "rb").read()
    assert data[:8] == ARCHIVE_MAGIC, path
    off, recs = 16, []
    while off < len(data):
        off += 8  # recv_ns
        magic, ver, flags, hlen, plen, rawlen = struct.unpack_from("<4sBBHII", data, off)
        assert magic == FRAME_MAGIC and ver == 1, (path, off)
        payload = data[off + hlen:off + hlen + plen]
        if flags & 1:
            payload = inflate(payload, rawlen)
        assert len(payload) == rawlen
        recs += decode_payload(payload)
        off += hlen + plen
    return recs


def frame(records_raw, seq=0):
    """An uncompressed frame around an encoded payload."""
    head = struct.pack("<4sBBHIII", FRAME_MAGIC, 1, 0, 24, len(records_raw), len(records_raw), seq)
    crc = crc32c(records_raw, crc32c(head))
    return head + struct.pack("<I", crc) + records_raw


def record(typ, *fields):
    body = b"".join(f if isinstance(f, bytes) else varint(f) for f in fields)
    return varint(typ) + varint(len(body)) + body


def string(s):
    b = s if isinstance(s, bytes) else s.encode()
    return varint(len(b)) + b


def write_archive(path, frames):
    now = time.time_ns()
    with open(path, "wb") as f:
        f.write(ARCHIVE_MAGIC + struct.pack("<Q", now))
        for fr in frames:
            f.write(struct.pack("<Q", now) + fr)
