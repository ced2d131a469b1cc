"""A real redis-server for tests (stdlib only).

    srv = RedisServer(tmp_path / "redis")      # a free 127.0.0.1 port
    srv.start()                                # waits for PING
    srv.call("GET", "{llmroute}:s:team-a:20000")   # RESP over a socket
    srv.cli("GET", "{llmroute}:s:team-a:20000")    # the same via redis-cli
    srv.kill()                                 # kill -9 (data is gone:
    srv.start()                                #   no persistence) and
                                               #   restart on the same port
    srv.pause(); srv.resume()                  # SIGSTOP / SIGCONT
    srv.stop()

The server runs with `--save '' --appendonly no --dir TMP`, so a restart
after kill() starts empty.  `requirepass=` and `unixsocket=True` configure
a password and a unix socket (srv.unix_path).
"""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from llmroute_harness import free_port

REDIS_SERVER = os.environ.get("REDIS_SERVER", "redis-server")
REDIS_CLI = os.environ.get("REDIS_CLI", "redis-cli")


class RedisError(Exception):
    """An error reply (-ERR ...)."""


def _encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if not isinstance(a, bytes):
            a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class _Reader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _line(self):
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("redis closed the connection")
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("redis closed the connection")
            self.buf += data
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n).decode("utf-8",
                                                             "replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise ValueError("bad RESP line %r" % line)


class RedisServer:
    def __init__(self, dir, port=None, requirepass=None, unixsocket=False):
        self.dir = Path(dir).resolve()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.requirepass = requirepass
        self.unix_path = str(self.dir / "redis.sock") if unixsocket else None
        self.proc = None
        self.paused = False
        self.starts = 0

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    # ------------------------------------------------------------ process

    def start(self, timeout=10.0):
        assert self.proc is None, "already running"
        cmd = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
               "--save", "", "--appendonly", "no", "--dir", str(self.dir),
               "--daemonize", "no", "--protected-mode", "no",
               "--logfile", str(self.dir / "redis.log")]
        if self.requirepass:
            cmd += ["--requirepass", self.requirepass]
        if self.unix_path:
            cmd += ["--unixsocket", self.unix_path, "--unixsocketperm", "777"]
        for f in ("dump.rdb",):                 # never start with old data
            try:
                (self.dir / f).unlink()
            except FileNotFoundError:
                pass
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = self.log()
                self.proc = None
                raise RuntimeError("redis-server exited:\n" + log[-3000:])
            try:
                if self.call("PING", timeout=0.5) == "PONG":
                    return self
            except (OSError, ConnectionError):
                pass
            time.sleep(0.02)
        self.kill()
        raise RuntimeError("redis-server did not answer PING")

    def log(self):
        try:
            return (self.dir / "redis.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def kill(self):
        """kill -9; the data is lost (no persistence)."""
        if self.proc is None:
            return
        if self.paused:
            self.resume()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def stop(self):
        if self.proc is None:
            return
        if self.paused:
            self.resume()
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def restart(self, timeout=10.0):
        """kill -9, then start again on the same port, empty."""
        self.kill()
        return self.start(timeout)

    def pause(self):
        """SIGSTOP: the port still accepts connections (the kernel's
        backlog) but nothing is answered."""
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    # ------------------------------------------------------------ client

    def call(self, *args, timeout=5.0, db=None):
        """One command on a fresh connection; returns the decoded reply
        (str, int, None, list); an error reply raises RedisError."""
        with socket.create_connection(("127.0.0.1", self.port),
                                      timeout) as s:
            cmds = []
            if self.requirepass:
                cmds.append(("AUTH", self.requirepass))
            if db is not None:
                cmds.append(("SELECT", db))
            cmds.append(args)
            s.sendall(b"".join(_encode(c) for c in cmds))
            rd = _Reader(s)
            replies = [rd.reply() for _ in cmds]
        for r in replies:
            if isinstance(r, RedisError):
                raise r
        return replies[-1]

    def cli(self, *args, db=None):
        """The same through redis-cli (stdout, stripped)."""
        cmd = [REDIS_CLI, "-h", "127.0.0.1", "-p", str(self.port)]
        if db is not None:
            cmd += ["-n", str(db)]
        env = dict(os.environ)
        if self.requirepass:
            env["REDISCLI_AUTH"] = self.requirepass
        p = subprocess.run(cmd + [str(a) for a in args], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=10)
        assert p.returncode == 0, p.stderr
        return p.stdout.decode().strip()

    def keys(self, pattern="*", db=None):
        out, cursor = [], "0"
        while True:
            cursor, batch = self.call("SCAN", cursor, "MATCH", pattern,
                                      "COUNT", 1000, db=db)
            out += batch
            if cursor == "0":
                return sorted(set(out))

    def hgetall(self, key, db=None):
        flat = self.call("HGETALL", key, db=db) or []
        return dict(zip(flat[0::2], flat[1::2]))
