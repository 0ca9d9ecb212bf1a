"""The gRPC server and its client, against a real server process on loopback.

Each test starts `python -m byrondbm serve PATH --port 0` (the command line's `serve`), reads the bound
port from its first line, talks to it with `byrondbm.server.client`, and stops it with a signal.
Every wait is bounded; every loop has a fixed number of steps.
"""

from __future__ import annotations

import os
import queue
import random
import re
import shelve
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

grpc = pytest.importorskip("grpc")

import byrondbm
from byrondbm.errors import CorruptionError, error
from byrondbm.server import MAX_MESSAGE_BYTES
from byrondbm.server import byrondbm_pb2 as pb
from byrondbm.server import byrondbm_pb2_grpc as pb_grpc
from byrondbm.server.client import Client, connect
from byrondbm.server.status import exception_for

REPO = Path(__file__).resolve().parents[1]
WAIT = 60.0  # seconds: the bound on every wait for the server (a start, a stop, a thread)


def _env() -> dict[str, str]:
    paths = [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(paths))


def _serve_cmd(path: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "byrondbm", "serve", str(path), *args]


class ServerProcess:
    """A server subprocess on 127.0.0.1 with a free port; `target` is its "host:port"."""

    def __init__(self, path: Path, *args: str, port: int = 0) -> None:
        self.path = path
        self._err_path = path.parent / f"{path.name}.server-{id(self)}.err"
        self._err = open(self._err_path, "w")  # noqa: SIM115  # closed by stop()
        self.proc = subprocess.Popen(
            _serve_cmd(path, "--port", str(port), *args),
            stdout=subprocess.PIPE,
            stderr=self._err,
            text=True,
            env=_env(),
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        try:
            line = self._lines.get(timeout=WAIT)
            if line is None:
                raise AssertionError(f"server did not start: {self.stderr()}")
            match = re.fullmatch(r"serving (.+) on 127\.0\.0\.1:(\d+)", line.strip())
            assert match, line
        except BaseException:
            self.stop(signal.SIGKILL)  # never outlives a failed start
            raise
        self.port = int(match.group(2))
        self.target = f"127.0.0.1:{self.port}"

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def stderr(self) -> str:
        return self._err_path.read_text()

    def stop(self, signum: int = signal.SIGTERM) -> int:
        """Sends `signum` (if still running) and returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            status = self.proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("server did not stop within the time limit") from None
        finally:
            self._err.close()
        return status


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path / "db")
    yield srv
    assert srv.stop() == 0, srv.stderr()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[Client]:
    with connect(server.target) as c:
        yield c


def _expected_scan(
    model: dict[bytes, bytes],
    start: bytes | None,
    stop: bytes | None,
    prefix: bytes | None,
    reverse: bool,
    keys_only: bool,
    limit: int | None,
) -> list[Any]:
    keys = [
        k
        for k in sorted(model)
        if (start is None or k >= start) and (stop is None or k < stop) and (prefix is None or k.startswith(prefix))
    ]
    if reverse:
        keys.reverse()
    if limit is not None:
        keys = keys[:limit]
    return keys if keys_only else [(k, model[k]) for k in keys]


def _raw_stub(target: str, **options: int) -> tuple[Any, Any]:
    channel = grpc.insecure_channel(target, options=list(options.items()))
    return channel, pb_grpc.ByronDBMStub(channel)


def test_mapping_calls(client: Client) -> None:
    client[b"a"] = b"1"
    client["b"] = "2"
    client[bytearray(b"c")] = memoryview(b"3")
    client[b""] = b""
    client[b"nul\x00key"] = b"\x00"
    assert client[b"a"] == b"1" and client["b"] == b"2" and client[b"c"] == b"3"
    assert client[b""] == b"" and client[b"nul\x00key"] == b"\x00"
    assert client.get(b"missing") is None and client.get(b"missing", b"d") == b"d"
    assert b"a" in client and "b" in client and b"missing" not in client
    assert len(client) == 5
    assert list(client) == client.keys() == [b"", b"a", b"b", b"c", b"nul\x00key"]
    assert isinstance(client.keys(), list)
    del client[b"a"]
    assert b"a" not in client and len(client) == 4
    assert client.setdefault(b"e", b"5") == b"5" and client.pop(b"e") == b"5"
    client.update({b"x": b"9"})
    assert dict(client.items()) == {b"": b"", b"b": b"2", b"c": b"3", b"nul\x00key": b"\x00", b"x": b"9"}
    assert list(client.values()) == [b"", b"2", b"3", b"\x00", b"9"]
    assert (b"b", b"2") in client.items() and b"3" in client.values()
    client.sync()
    stats = client.stats()
    assert {"levels", "live_keys", "sequence", "write_amplification"} <= stats.keys()
    client.clear()
    assert len(client) == 0 and client.keys() == []


def test_batch_is_one_atomic_call(client: Client) -> None:
    client[b"gone"] = b"x"
    with client.batch() as b:
        b[b"k1"] = b"v1"
        b.put("k2", "v2")
        b[b"k3"] = b"v3"
        del b[b"k3"]
        b.delete(b"gone")
        b.delete(b"never-there")  # not an error in a batch
        assert b"k1" not in client  # invisible before the block exits
    assert client.keys() == [b"k1", b"k2"]
    with pytest.raises(RuntimeError), client.batch() as b:
        b[b"k9"] = b"v9"
        del b[b"k1"]
        raise RuntimeError("abandon")
    assert client.keys() == [b"k1", b"k2"]
    with pytest.raises(error):
        b.put(b"late", b"x")
    explicit = client.batch()
    explicit[b"k3"] = b"v3"
    assert len(explicit) == 1
    explicit.commit()
    assert client[b"k3"] == b"v3"
    with pytest.raises(error):
        explicit.commit()


def test_scan_matches_model(client: Client) -> None:
    model = {f"k{i}".encode(): f"v{i}".encode() for i in range(10)}
    model[b""] = b"empty"
    with client.batch() as b:
        for k, v in model.items():
            b[k] = v
    bounds = (None, b"", b"k1", b"k5x", b"z")
    for start in bounds:
        for stop in bounds:
            for prefix in (None, b"", b"k1", b"x"):
                for reverse in (False, True):
                    for keys_only in (False, True):
                        for limit in (None, 0, 3):
                            got = list(
                                client.scan(
                                    start, stop, prefix=prefix, reverse=reverse, keys_only=keys_only, limit=limit
                                )
                            )
                            want = _expected_scan(model, start, stop, prefix, reverse, keys_only, limit)
                            assert got == want, (start, stop, prefix, reverse, keys_only, limit)
    with pytest.raises(ValueError):
        client.scan(limit=-1)


def test_long_scan_is_streamed_in_chunks_and_can_be_abandoned(client: Client) -> None:
    value = b"v" * 300  # 5000 entries of ~300 bytes span several 1 MiB messages
    model = {f"key{i:05d}".encode(): value + str(i).encode() for i in range(5000)}
    with client.batch() as b:
        for k, v in model.items():
            b[k] = v
    assert list(client.scan()) == sorted(model.items())
    assert list(client.scan(reverse=True, keys_only=True)) == sorted(model, reverse=True)
    abandoned = client.scan()
    assert next(abandoned) == (b"key00000", model[b"key00000"])
    abandoned.close()  # cancels the stream; the server carries on
    assert len(client) == 5000


def test_missing_keys_and_bad_types(client: Client) -> None:
    with pytest.raises(KeyError) as missing:
        client[b"nope"]
    assert missing.value.args == (b"nope",)
    with pytest.raises(KeyError) as missing_str:
        del client["nope"]
    assert missing_str.value.args == ("nope",)  # the key as given, as the embedded database raises it
    with pytest.raises(TypeError):
        client[1]  # type: ignore[index]
    with pytest.raises(TypeError):
        client[b"k"] = 1  # type: ignore[assignment]
    with pytest.raises(TypeError):
        _ = 1 in client
    with pytest.raises(TypeError):
        client.scan(start=1)  # type: ignore[arg-type]


def test_status_codes_from_the_server_map_back(server: ServerProcess) -> None:
    channel, stub = _raw_stub(server.target)
    with channel:
        with pytest.raises(grpc.RpcError) as not_found:
            stub.Get(pb.KeyRequest(key=b"nope"))
        assert not_found.value.code() is grpc.StatusCode.NOT_FOUND
        assert isinstance(exception_for(not_found.value, b"nope"), KeyError)
        # A mutation without a kind is a bad argument; the batch is all or nothing.
        bad = pb.BatchRequest(
            mutations=[pb.Mutation(kind=pb.Mutation.PUT, key=b"k", value=b"v"), pb.Mutation(key=b"x")]
        )
        with pytest.raises(grpc.RpcError) as invalid:
            stub.Batch(bad)
        assert invalid.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert isinstance(exception_for(invalid.value), TypeError)
        assert not stub.Contains(pb.KeyRequest(key=b"k")).value


def test_read_only_server_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with byrondbm.open(path, "c") as db:
        db[b"k"] = b"v"
    srv = ServerProcess(path, "--flag", "r")
    try:
        with connect(srv.target) as c:
            assert c[b"k"] == b"v" and list(c.scan()) == [(b"k", b"v")]
            for write in (lambda: c.__setitem__(b"x", b"y"), lambda: c.__delitem__(b"k"), lambda: _batch_put(c)):
                with pytest.raises(error) as refused:
                    write()
                assert refused.value.__cause__.code() is grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[union-attr]
            assert c.keys() == [b"k"]
    finally:
        assert srv.stop() == 0, srv.stderr()


def _batch_put(c: Client) -> None:
    with c.batch() as b:
        b[b"x"] = b"y"


def test_corruption_reaches_the_client_as_corruption_error(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with byrondbm.open(path, "c", memtable_size=64 * 1024) as db:
        with db.batch() as b:
            for i in range(4000):
                b[f"key{i:05d}".encode()] = os.urandom(64)
        db.compact()
    tables = sorted(
        (p for p in path.iterdir() if p.suffix in (".sst", ".ldb", ".table")), key=lambda p: p.stat().st_size
    )
    assert tables, sorted(p.name for p in path.iterdir())
    victim = tables[-1]
    data = bytearray(victim.read_bytes())
    data[len(data) // 3] ^= 0xFF  # inside the data blocks, far from the footer and index
    victim.write_bytes(bytes(data))
    srv = ServerProcess(path, "--flag", "r")
    try:
        with connect(srv.target) as c:
            with pytest.raises(CorruptionError) as corrupt:
                list(c.scan())
            assert corrupt.value.__cause__.code() is grpc.StatusCode.INTERNAL  # type: ignore[union-attr]
            assert isinstance(c.stats(), dict)  # the server still answers
    finally:
        assert srv.stop() == 0, srv.stderr()


def test_token_refused_and_accepted(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    srv = ServerProcess(tmp_path / "db", "--token-file", str(token_file))
    try:
        for token in (None, "wrong", "s3cret-token "):
            with connect(srv.target, token=token) as c:
                for call in (
                    lambda: c[b"k"],
                    lambda: c.__setitem__(b"k", b"v"),
                    lambda: len(c),
                    lambda: list(c.scan()),
                ):
                    with pytest.raises(error) as refused:
                        call()
                    assert refused.value.__cause__.code() is grpc.StatusCode.UNAUTHENTICATED  # type: ignore[union-attr]
        with connect(srv.target, token="s3cret-token") as c:
            c[b"k"] = b"v"
            assert c[b"k"] == b"v" and list(c.scan()) == [(b"k", b"v")] and len(c) == 1
    finally:
        assert srv.stop() == 0, srv.stderr()


def _run_serve(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _serve_cmd(path, *args), capture_output=True, text=True, timeout=WAIT, env=_env(), check=False
    )


def test_non_loopback_without_token_refuses_to_start(tmp_path: Path) -> None:
    path = tmp_path / "db"
    for host in ("0.0.0.0", "::", "example.com"):
        result = _run_serve(path, "--host", host, "--port", "0")
        assert result.returncode == 2 and "refusing" in result.stderr, result
    empty = tmp_path / "empty-token"
    empty.write_text("\n")
    result = _run_serve(path, "--token-file", str(empty), "--port", "0")
    assert result.returncode == 2 and "empty" in result.stderr, result
    result = _run_serve(path, "--tls-cert", str(empty), "--port", "0")
    assert result.returncode == 2 and "go together" in result.stderr, result
    result = _run_serve(path, "--tls-cert", str(empty), "--tls-key", str(empty), "--port", "0")
    assert result.returncode == 2 and "not PEM" in result.stderr, result
    # The same command on its own, without the rest of the command line:
    standalone = [sys.executable, "-m", "byrondbm.server", str(path), "--host", "0.0.0.0"]
    result = subprocess.run(standalone, capture_output=True, text=True, timeout=WAIT, env=_env(), check=False)
    assert result.returncode == 2 and "refusing" in result.stderr, result
    assert not path.exists()  # refused before touching the database


def test_port_in_use_or_database_locked_fails_with_status_1(tmp_path: Path, server: ServerProcess) -> None:
    other = tmp_path / "other"
    result = _run_serve(other, "--port", str(server.port))
    assert result.returncode == 1 and result.stderr.startswith("byrondbm serve: error: cannot bind"), result
    assert result.stderr.count("\n") == 1, result  # one line: gRPC's own log stays off stderr
    assert not other.exists()  # the port is bound before the database is created
    result = _run_serve(server.path, "--port", "0")  # the running server holds the database's lock
    assert result.returncode == 1 and result.stderr.startswith("byrondbm serve: error: "), result
    assert "lock" in result.stderr and "Errno" not in result.stderr and result.stderr.count("\n") == 1, result
    verbose = _run_serve(other, "--port", str(server.port), "--verbose")
    assert verbose.returncode == 1 and "add_port" in verbose.stderr, verbose  # gRPC's log, asked for


def test_message_size_limits(server: ServerProcess, client: Client) -> None:
    big = os.urandom(8 << 20)  # above gRPC's 4 MiB default: the limits are raised on both sides
    client[b"big"] = big
    assert client[b"big"] == big
    assert list(client.scan(keys_only=True)) == [b"big"]
    with pytest.raises(error) as too_big:
        client[b"huge"] = bytes(MAX_MESSAGE_BYTES)
    assert too_big.value.__cause__.code() is grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[union-attr]
    # A client without a send limit: the server refuses the message and keeps running.
    channel, stub = _raw_stub(server.target, **{"grpc.max_send_message_length": -1})
    with channel:
        with pytest.raises(grpc.RpcError) as refused:
            stub.Put(pb.PutRequest(key=b"huge", value=bytes(MAX_MESSAGE_BYTES)))
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert b"huge" not in client and client[b"big"] == big


def test_connect_without_a_server_fails_fast() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(error, match="cannot connect"):
        connect(f"127.0.0.1:{port}", timeout=0.5)


def test_closed_client_raises_error(client: Client) -> None:
    client.close()
    client.close()  # idempotent
    for call in (lambda: client[b"k"], lambda: len(client), lambda: client.scan(), client.sync, lambda: client.get_many([b"k"])):
        with pytest.raises(error):
            call()


def test_shelf_over_a_client(server: ServerProcess) -> None:
    with shelve.Shelf(byrondbm.connect(server.target)) as shelf:
        shelf["one"] = {"n": 1}
        shelf["two"] = [2, 2]
        assert shelf["one"] == {"n": 1} and "two" in shelf and len(shelf) == 2
        assert list(shelf.keys()) == ["one", "two"]
        del shelf["one"]
        assert list(shelf) == ["two"]
    with connect(server.target) as c:
        assert c.keys() == [b"two"]


def test_sixteen_concurrent_clients_with_a_checker(server: ServerProcess) -> None:
    """Each client owns a key prefix and checks every read against its own model of that prefix."""
    models: list[dict[bytes, bytes]] = [{} for _ in range(16)]
    failures: list[BaseException] = []

    def work(index: int) -> None:
        rng = random.Random(index)
        model = models[index]
        prefix = f"c{index:02d}/".encode()
        try:
            with connect(server.target) as c:
                for step in range(120):
                    key = prefix + str(rng.randrange(40)).encode()
                    roll = rng.random()
                    if roll < 0.35:
                        value = f"{index}-{step}".encode()
                        c[key] = value
                        model[key] = value
                    elif roll < 0.55:
                        assert c.get(key) == model.get(key)
                    elif roll < 0.65:
                        assert (key in c) == (key in model)
                    elif roll < 0.75:
                        if key in model:
                            del c[key]
                            del model[key]
                        else:
                            with pytest.raises(KeyError):
                                del c[key]
                    elif roll < 0.9:
                        with c.batch() as b:
                            for _ in range(5):
                                k = prefix + str(rng.randrange(40)).encode()
                                if rng.random() < 0.7:
                                    b[k] = model[k] = f"b{index}-{step}".encode()
                                else:
                                    del b[k]
                                    model.pop(k, None)
                    else:
                        assert list(c.scan(prefix=prefix)) == sorted(model.items())
        except BaseException as exc:  # noqa: BLE001  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert not any(t.is_alive() for t in threads)
    assert not failures, failures
    everything = {k: v for model in models for k, v in model.items()}
    with connect(server.target) as c:
        assert list(c.scan()) == sorted(everything.items())
        assert len(c) == len(everything)


def test_scan_streams_while_writes_go_on(server: ServerProcess, client: Client) -> None:
    # ~20 MB: more than gRPC keeps in flight (~6 MB measured), so the server is still reading its scan
    # from the database while the writes land.
    keys = [f"k{i:05d}".encode() for i in range(40000)]
    model = {}
    for start in range(0, len(keys), 2000):
        with client.batch() as b:
            for k in keys[start : start + 2000]:
                b[k] = model[k] = b"v" * 500 + k
    snapshot = dict(model)
    scan = client.scan()  # sees the database as it is now, whatever is written next
    halfway = threading.Event()

    def write() -> None:
        with connect(server.target) as w:
            for n, i in enumerate(range(0, len(keys), 97)):
                key = keys[i]
                if i % 2:
                    del w[key]
                    model.pop(key)
                else:
                    w[key] = model[key] = b"new"
                w[key + b"+"] = model[key + b"+"] = b"inserted"
                if n == 200:
                    halfway.set()

    writer = threading.Thread(target=write)
    writer.start()
    assert halfway.wait(WAIT)
    seen = [next(scan) for _ in range(1000)]
    seen.extend(scan)  # the rest streams while the other half of the writes lands
    writer.join(WAIT)
    assert not writer.is_alive()
    assert seen == sorted(snapshot.items())
    assert list(client.scan()) == sorted(model.items())


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_graceful_stop_under_load_keeps_every_acknowledged_write(tmp_path: Path, signum: int) -> None:
    path = tmp_path / "db"
    # Flag 'f' buffers writes in the server process until close(): only a graceful stop keeps them.
    srv = ServerProcess(path, "--flag", "cf")
    acked: list[dict[bytes, bytes]] = [{} for _ in range(8)]
    enough = threading.Semaphore(0)
    stray: list[BaseException] = []

    def write(index: int) -> None:
        with connect(srv.target) as c:
            for n in range(5000):  # bounded; the stop normally ends this much sooner
                key = f"w{index}-{n:05d}".encode()
                value = os.urandom(16)
                try:
                    if n % 10 == 9:
                        with c.batch() as b:
                            b[key] = value
                            b[key + b"b"] = value
                        acked[index][key + b"b"] = value
                    else:
                        c[key] = value
                except error:
                    return  # the server stopped: this write was not acknowledged
                except BaseException as exc:  # noqa: BLE001  # reported by the main thread
                    stray.append(exc)
                    return
                acked[index][key] = value
                if n == 50:
                    enough.release()

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for _ in threads:
        assert enough.acquire(timeout=WAIT)
    status = srv.stop(signum)
    for t in threads:
        t.join(WAIT)
    assert not any(t.is_alive() for t in threads)
    assert status == 0 and "stopped" in srv.stderr(), srv.stderr()
    assert not stray, stray
    with byrondbm.open(path, "r") as db:
        for model in acked:
            assert len(model) > 50
            for key, value in model.items():
                assert db[key] == value


def test_command_loads_without_grpc(tmp_path: Path) -> None:
    """`byrondbm --help` must work without the extra: the command imports grpc only when it runs."""
    code = (
        "import argparse, sys\n"
        "sys.modules['grpc'] = None\n"  # makes `import grpc` fail
        "from byrondbm.server import command\n"
        "parser = argparse.ArgumentParser()\n"
        "command.add_arguments(parser)\n"
        f"sys.exit(command.run(parser.parse_args([{str(tmp_path / 'db')!r}])))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=WAIT, env=_env(), check=False
    )
    assert result.returncode == 1 and "server" in result.stderr and "extra" in result.stderr, result
