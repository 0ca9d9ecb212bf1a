"""The session stream, `get_many` and TLS, against a real server process on loopback.

Uses `ServerProcess` of test_server.py: `python -m byrondbm serve PATH --port 0`, stopped (killed at worst)
in a `finally`. Every wait is bounded; every loop has a fixed number of steps.
"""

from __future__ import annotations

import gc
import random
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

grpc = pytest.importorskip("grpc")

import byrondbm
from byrondbm.errors import error
from byrondbm.server import byrondbm_pb2 as pb
from byrondbm.server import byrondbm_pb2_grpc as pb_grpc
from byrondbm.server.client import Client, connect
from byrondbm.server.multiplex import REQUEST_PACK_BYTES
from byrondbm.server.ops import INLINE_KEYS
from test_server import WAIT, ServerProcess


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path / "db")
    try:
        yield srv
    finally:
        assert srv.stop() == 0, srv.stderr()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[Client]:
    with connect(server.target) as c:
        yield c


def test_database_get_many(tmp_path: Path) -> None:
    with byrondbm.open(tmp_path / "db", "c", memtable_size=4096) as db:
        model = {f"k{i:04d}".encode(): f"v{i}".encode() * 20 for i in range(0, 600, 2)}
        for k, v in model.items():  # several tables and a memtable
            db[k] = v
        db[b""] = b""
        asked = [f"k{i:04d}" for i in random.Random(1).sample(range(600), 300)]
        asked += [b"", bytearray(b"k0002"), memoryview(b"k0003"), "k0002"]  # type: ignore[list-item]
        want = [model.get(bytes(k) if not isinstance(k, str) else k.encode()) for k in asked]
        want[-4] = b""
        assert db.get_many(asked) == want
        assert db.get_many([]) == [] and db.get_many(iter([b"k0000"])) == [model[b"k0000"]]
        with pytest.raises(TypeError):
            db.get_many([b"k", 1])  # type: ignore[list-item]
    with pytest.raises(error):
        db.get_many([b"k0000"])  # closed


def test_client_get_many_matches_the_database(server: ServerProcess, client: Client) -> None:
    model = {f"k{i:05d}".encode(): bytes([i % 256]) * (i % 7) for i in range(0, 2000, 3)}
    with client.batch() as b:
        for k, v in model.items():
            b[k] = v
    rng = random.Random(2)
    for count in (0, 1, 100, INLINE_KEYS + 1, 1500):  # inline on the server's loop, and in its pool
        keys = [f"k{rng.randrange(2000):05d}".encode() for _ in range(count)]
        assert client.get_many(keys) == [model.get(k) for k in keys]
    assert client.get_many(["k00000", "missing", bytearray(b"k00003")]) == [model[b"k00000"], None, model[b"k00003"]]
    assert model[b"k00000"] == b"" and client.get_many([b"k00000"]) == [b""]  # empty, not absent
    big = [b"x" * 1024] * (REQUEST_PACK_BYTES // 1024 + 1)  # too big to pack: a unary GetMany call
    assert client.get_many(big) == [None] * len(big)
    with pytest.raises(TypeError):
        client.get_many([b"k", None])  # type: ignore[list-item]
    channel = grpc.insecure_channel(server.target)
    with channel:  # the unary call, as another language would make it
        reply = pb_grpc.ByronDBMStub(channel).GetMany(pb.KeysRequest(keys=[b"k00003", b"nope", b"k00000"]))
        assert list(reply.values) == [model[b"k00003"], b"", b""] and list(reply.absent) == [1]


def test_session_answers_every_request_kind_and_maps_errors(server: ServerProcess) -> None:
    """Raw session messages, as any gRPC language would send them: ids echoed, failures as statuses."""
    requests = [
        pb.Request(id=1, put=pb.PutRequest(key=b"a", value=b"1")),
        pb.Request(id=2, batch=pb.BatchRequest(mutations=[pb.Mutation(kind=pb.Mutation.PUT, key=b"b", value=b"2")])),
    ]
    later = [
        pb.Request(id=3, get=pb.KeyRequest(key=b"a")),
        pb.Request(id=4, get=pb.KeyRequest(key=b"nope")),
        pb.Request(id=5, contains=pb.KeyRequest(key=b"b")),
        pb.Request(id=6, get_many=pb.KeysRequest(keys=[b"b", b"x", b"a"])),
        pb.Request(id=7, len=pb.Empty()),
        pb.Request(id=8, delete=pb.KeyRequest(key=b"nope")),
        pb.Request(id=9, batch=pb.BatchRequest(mutations=[pb.Mutation(key=b"no kind")])),
        pb.Request(id=10),  # no operation
    ]
    channel = grpc.insecure_channel(server.target)
    with channel:
        stub = pb_grpc.ByronDBMStub(channel)
        first = {r.id: r for m in stub.Session(iter([pb.SessionRequest(requests=requests)])) for r in m.replies}
        assert {i: r.WhichOneof("result") for i, r in first.items()} == {1: "done", 2: "done"}
        replies = {r.id: r for m in stub.Session(iter([pb.SessionRequest(requests=later)])) for r in m.replies}
    assert sorted(replies) == list(range(3, 11))
    assert replies[3].value == b"1" and replies[5].found and replies[7].count == 2
    assert list(replies[6].values.values) == [b"2", b"", b"1"] and list(replies[6].values.absent) == [1]
    not_found = grpc.StatusCode.NOT_FOUND.value[0]
    invalid = grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert replies[4].error.code == not_found and replies[8].error.code == not_found
    assert replies[9].error.code == invalid and replies[10].error.code == invalid


def test_read_only_errors_travel_the_session_with_their_cause(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with byrondbm.open(path, "c") as db:
        db[b"k"] = b"v"
    srv = ServerProcess(path, "--flag", "r")
    try:
        with connect(srv.target) as c:
            with pytest.raises(error) as refused:
                c[b"x"] = b"y"
            assert refused.value.__cause__.code() is grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[union-attr]
            assert c.get_many([b"k", b"x"]) == [b"v", None]  # the stream goes on after a failed request
    finally:
        assert srv.stop() == 0, srv.stderr()


def test_threads_share_one_session(client: Client) -> None:
    """Eight threads on one client: every reply reaches the thread that asked (each checks its own keys)."""
    failures: list[BaseException] = []

    def work(index: int) -> None:
        try:
            for step in range(150):
                key = f"t{index}/{step % 10}".encode()
                value = f"{index}:{step}".encode()
                client[key] = value
                assert client[key] == value
                assert client.get_many([key, b"absent"]) == [value, None]
                if step % 10 == 9:
                    del client[key]
                    assert key not in client
        except BaseException as exc:  # noqa: BLE001  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert not any(t.is_alive() for t in threads)
    assert not failures, failures
    assert len(client) == 8 * 9


def test_a_dropped_client_ends_its_stream(server: ServerProcess) -> None:
    def readers() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "byrondbm-session-reader"]

    before = set(readers())
    c = connect(server.target)
    c[b"k"] = b"v"
    (mine,) = set(readers()) - before
    del c
    gc.collect()
    mine.join(WAIT)
    assert not mine.is_alive()


def test_a_killed_server_fails_waiting_calls_and_a_new_one_is_reached(tmp_path: Path) -> None:
    """SIGKILL while threads wait on the stream: each raises byrondbm.error (none hangs); once a server
    listens there again, the same client opens a new stream and carries on."""
    srv = ServerProcess(tmp_path / "db")
    try:
        _hammer_through_a_kill(srv)
    finally:
        srv.stop(signal.SIGKILL)  # a no-op once killed


def _hammer_through_a_kill(srv: ServerProcess) -> None:
    outcomes: list[object] = []
    started = threading.Barrier(5, timeout=WAIT)
    with connect(srv.target) as c:
        c[b"k"] = b"v"

        def hammer() -> None:
            started.wait()
            try:
                for _ in range(100_000):  # bounded; the kill ends it much sooner
                    c[b"k"] = b"v"
                outcomes.append("finished")
            except error as exc:
                outcomes.append(exc)
            except BaseException as exc:  # noqa: BLE001  # reported by the main thread
                outcomes.append(("unexpected", exc))

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for t in threads:
            t.start()
        started.wait()
        srv.stop(signal.SIGKILL)
        for t in threads:
            t.join(WAIT)
        assert not any(t.is_alive() for t in threads)
        assert len(outcomes) == 4 and all(isinstance(o, error) for o in outcomes), outcomes
        with pytest.raises(error):
            c[b"k"]  # nobody listens: a new stream fails too
        again = ServerProcess(srv.path, port=srv.port)
        value = None
        try:
            for _ in range(int(WAIT / 0.1)):  # the channel retries connecting with a backoff
                try:
                    value = c[b"k"]
                    break
                except error:
                    time.sleep(0.1)
            assert value == b"v"
        finally:
            assert again.stop() == 0, again.stderr()


def _make_certificate(directory: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],  # fmt: skip
        check=True,
        capture_output=True,
        timeout=WAIT,
    )
    return cert, key


def test_tls_with_a_token(tmp_path: Path) -> None:
    cert, key = _make_certificate(tmp_path)
    token_file = tmp_path / "token"
    token_file.write_text("tls-token")
    srv = ServerProcess(tmp_path / "db", "--tls-cert", str(cert), "--tls-key", str(key), "--token-file", str(token_file))
    try:
        with byrondbm.connect(srv.target, token="tls-token", tls_ca=cert) as c:
            c[b"k"] = b"v"
            assert c[b"k"] == b"v" and c.get_many([b"k", b"x"]) == [b"v", None] and list(c.scan()) == [(b"k", b"v")]
        with connect(srv.target, token="wrong", tls_ca=cert) as c, pytest.raises(error) as refused:
            c[b"k"]
        assert refused.value.__cause__.code() is grpc.StatusCode.UNAUTHENTICATED  # type: ignore[union-attr]
        with pytest.raises(error, match="cannot connect"):  # plain text to a TLS port: no handshake
            connect(srv.target, token="tls-token", timeout=1.0)
        (tmp_path / "other").mkdir()
        other, _ = _make_certificate(tmp_path / "other")
        with pytest.raises(error, match="cannot connect"):  # a certificate the client does not trust
            connect(srv.target, token="tls-token", tls_ca=other, timeout=1.0)
    finally:
        assert srv.stop() == 0, srv.stderr()
    with pytest.raises(error, match="certificate authorities"):
        connect(srv.target, tls_ca=tmp_path / "missing.pem")
