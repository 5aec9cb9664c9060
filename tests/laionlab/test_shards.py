"""laionlab.io.shards reads a shard's samples the same from a plain tar (laionlab.io.tar_stream)
and a compressed one (tarfile), keeping only the wanted uids, one sample at a time."""

import gzip
import io
import json
import tarfile

import pytest

from laionlab.io.shards import iter_shard_samples


def _shard(path, samples, fmt=tarfile.PAX_FORMAT, compress=False):
    """A webdataset tar of ``samples`` (key → {ext: bytes}), with a directory entry first."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        folder = tarfile.TarInfo("shard")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        for key, members in samples.items():
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size, info.mtime = len(data), 1.5  # a float mtime: a PAX header, as img2dataset's
                tar.addfile(info, io.BytesIO(data))
    data = gzip.compress(buf.getvalue()) if compress else buf.getvalue()
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_plain_and_compressed_shards_give_the_same_samples(tmp_path, fmt):
    samples = {
        f"{i:09d}": {
            "jpg": bytes([i]) * (100 + i * 700),
            "txt": f"caption {i}".encode(),
            "json": json.dumps({"uid": f"p:{i}", "key": f"{i:09d}"}).encode(),
        }
        for i in range(5)
    }
    samples["000000009"] = {"txt": b"no json: skipped"}
    plain = _shard(tmp_path / "a.tar", samples, fmt)
    packed = _shard(tmp_path / "b.tar.gz", samples, fmt, compress=True)
    got = list(iter_shard_samples([plain]))
    assert got == list(iter_shard_samples([packed]))
    assert [uid for uid, _, _ in got] == [f"p:{i}" for i in range(5)]
    assert all(files == samples[meta["key"]] for _, files, meta in got)
    assert [uid for uid, _, _ in iter_shard_samples([plain, packed], {"p:3"})] == ["p:3", "p:3"]


def test_a_damaged_shard_is_an_error_naming_the_member(tmp_path):
    path = tmp_path / "cut.tar"
    _shard(path, {"000000000": {"jpg": b"x" * 5000, "json": b'{"uid": "p:0"}'}})
    path.write_bytes(path.read_bytes()[:3000])  # cut inside the image
    with pytest.raises(tarfile.ReadError, match="000000000.jpg"):
        list(iter_shard_samples([str(path)]))
