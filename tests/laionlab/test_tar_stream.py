"""laionlab.io.tar_stream against Python's tarfile on archives using each header kind."""

import io
import tarfile

import pytest

from laionlab.io.tar_stream import iter_files


def _archive(fmt, members, pax_headers=None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, pax_headers=pax_headers or {}) as tar:
        for name, data, kind in members:
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000.25  # a float mtime: tarfile writes a PAX header, as webdataset's writer does
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "link":
                info.type, info.linkname = tarfile.SYMTYPE, "x" * 150
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _reference(data: bytes) -> list[tuple[str, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar if m.isreg()]


MEMBERS = [
    ("000000001.jpg", bytes(range(256)) * 5, "file"),
    ("000000001.txt", "a caption with ünïcode".encode(), "file"),
    ("000000001.json", b"{}", "file"),
    ("empty.txt", b"", "file"),
    ("exact-block.bin", b"x" * 1024, "file"),
    ("some/dir", None, "dir"),
    ("a-link", None, "link"),
    ("deep/" * 30 + "long-name.jpg", b"long name contents", "file"),  # > 100 bytes: PAX path / GNU ././@LongLink
    ("d" * 120 + "/short.txt", b"ustar prefix field", "file"),  # fits ustar's 155-byte prefix + 100-byte name
]


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_same_files_as_tarfile(fmt):
    members = [m for m in MEMBERS if fmt != tarfile.USTAR_FORMAT or len(m[0]) <= 100 or "/short" in m[0]]
    if fmt == tarfile.USTAR_FORMAT:
        members = [m for m in members if m[2] != "link"]  # ustar cannot hold the 150-byte link target
    data = _archive(fmt, members)
    ours = list(iter_files(io.BytesIO(data)))
    assert ours == _reference(data)
    assert [name for name, _ in ours] == [m[0] for m in members if m[2] == "file"]


def test_global_pax_header_and_large_member():
    big = bytes(range(256)) * 4096 + b"tail"
    data = _archive(tarfile.PAX_FORMAT, [("a.bin", big, "file"), ("b.txt", b"b", "file")], {"comment": "global"})
    assert list(iter_files(io.BytesIO(data))) == _reference(data) == [("a.bin", big), ("b.txt", b"b")]


def test_damaged_archives_raise_read_errors():
    data = _archive(tarfile.PAX_FORMAT, MEMBERS[:3])
    with pytest.raises(tarfile.ReadError, match="unexpected end of data"):
        list(iter_files(io.BytesIO(data[:2000])))
    corrupt = bytearray(data)
    corrupt[1024 + 10] ^= 0xFF  # inside the second header block (the first member's ustar header)
    with pytest.raises(tarfile.ReadError, match="checksum"):
        list(iter_files(io.BytesIO(bytes(corrupt))))
    with pytest.raises(tarfile.ReadError, match="truncated tar header"):
        list(iter_files(io.BytesIO(data[:300])))
    assert list(iter_files(io.BytesIO(b""))) == []
