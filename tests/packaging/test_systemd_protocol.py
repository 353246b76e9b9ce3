"""The unit's protocol without systemd as PID 1 (NOTES.md): the packaged kilnd under
systemd-socket-activate, with NOTIFY_SOCKET pointing at a datagram socket this test
reads. It starts on the first connection, serves it on the passed socket (not on
server.listen), and says READY, WATCHDOG, RELOADING/READY on SIGHUP, STOPPING on SIGTERM."""
import asyncio
import os
import signal
import socket
import subprocess
import time
import unittest

from pkg_fixture import PackagedKilnd, Unpacked  # first: puts tests/integration on sys.path
from kiln_fixture import Client, free_port  # noqa: E402


class NotifySocket:
    """An AF_UNIX datagram socket collecting sd_notify messages."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.seen = []

    def expect(self, key, timeout=20):
        """Reads messages until one has the line KEY (e.g. "READY=1"); returns it."""
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {key} from kilnd; got {self.seen}")
            self.sock.settimeout(left)
            try:
                msg = self.sock.recv(4096).decode()
            except socket.timeout:
                continue
            self.seen.append(msg)
            if key in msg.split("\n"):
                return msg

    def close(self):
        self.sock.close()


class SocketActivationTest(unittest.TestCase):
    def setUp(self):
        self.pkg = Unpacked()
        self.k = PackagedKilnd(self.pkg)
        self.token = self.k.new_token("admin", "t1", "admin")
        self.notify = NotifySocket(os.path.join(self.k.tmp, "notify"))
        self.port = free_port()
        env = self.k.environment()
        # server.listen names another port: only the passed socket can answer.
        env.update(NOTIFY_SOCKET=self.notify.path, WATCHDOG_USEC="400000")
        passed = [a for name in sorted(env) if name.startswith("KILN_") or name in ("NOTIFY_SOCKET", "WATCHDOG_USEC")
                  for a in ("-E", name)]
        self.log = open(self.k.log_path, "ab")
        self.proc = subprocess.Popen(["systemd-socket-activate", "-l", f"127.0.0.1:{self.port}", *passed,
                                      self.pkg.kilnd, "--config", self.pkg.config],
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def tearDown(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        self.notify.close()
        self.k.cleanup()
        self.pkg.cleanup()

    def test_activation_and_notify_protocol(self):
        url = f"ws://127.0.0.1:{self.port}/ws"

        async def job():
            # The first connection starts kilnd (systemd-socket-activate waits for it).
            # systemd-socket-activate itself may not be listening yet on a loaded
            # machine: a refused connection is retried until it is.
            deadline = asyncio.get_running_loop().time() + 30
            while True:
                try:
                    c = await Client.connect(url, token=self.token, open_timeout=30)
                    break
                except ConnectionRefusedError:
                    self.assertIsNone(self.proc.poll(), "systemd-socket-activate exited")
                    self.assertLess(asyncio.get_running_loop().time(), deadline,
                                    "nothing listened on the activation port")
                    await asyncio.sleep(0.05)
            done, parts = await c.run("lens.nfw", {"mass": 2e14, "concentration": 4, "grid_size": 32})
            await c.close()
            return done, parts

        # The listening socket exists before kilnd does; connect, then read READY.
        done, parts = asyncio.run(asyncio.wait_for(job(), 120))
        self.assertEqual(done["state"], "done", done)
        ready = self.notify.expect("READY=1")
        self.assertIn(f"MAINPID={self.proc.pid}", ready.split("\n"))
        self.assertIn("socket(s) passed by systemd", self.k.read_log())
        self.notify.expect("WATCHDOG=1")

        self.proc.send_signal(signal.SIGHUP)
        self.notify.expect("RELOADING=1")
        self.notify.expect("READY=1")
        self.notify.expect("WATCHDOG=1")

        self.proc.send_signal(signal.SIGTERM)
        self.notify.expect("STOPPING=1")
        self.assertEqual(self.proc.wait(40), 0, self.k.read_log())


class PublicActivationWithoutAuthTest(unittest.TestCase):
    """auth.required = false is allowed only on loopback addresses: server.listen is
    checked by the configuration, and a socket systemd passes on another address
    (the packaged kiln.socket listens on 0.0.0.0) makes kilnd refuse to start,
    naming it, rather than serve everyone as admin."""

    def test_kilnd_refuses_a_public_passed_socket_with_auth_off(self):
        pkg = Unpacked()
        k = PackagedKilnd(pkg)
        port = free_port()
        env = k.environment()
        env["KILN_AUTH_REQUIRED"] = "false"  # server.listen stays 127.0.0.1: valid by itself
        passed = [a for name in sorted(env) if name.startswith("KILN_") for a in ("-E", name)]
        try:
            with open(k.log_path, "ab") as log:
                proc = subprocess.Popen(["systemd-socket-activate", "-l", f"0.0.0.0:{port}", *passed,
                                         pkg.kilnd, "--config", pkg.config],
                                        env=env, stdout=log, stderr=subprocess.STDOUT)
                try:
                    deadline = time.monotonic() + 30
                    while True:  # the first connection starts kilnd
                        try:
                            socket.create_connection(("127.0.0.1", port), timeout=5).close()
                            break
                        except ConnectionRefusedError:
                            self.assertLess(time.monotonic(), deadline, "nothing listened on the activation port")
                            time.sleep(0.05)
                    code = proc.wait(60)
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
            self.assertNotEqual(code, 0, k.read_log())
            self.assertIn(f"systemd passed a socket on 0.0.0.0:{port}", k.read_log())
        finally:
            k.cleanup()
            pkg.cleanup()


class PlainListenTest(unittest.TestCase):
    """Without a passed socket the same binary listens on server.listen itself."""

    def test_listens_without_activation(self):
        pkg = Unpacked()
        k = PackagedKilnd(pkg)
        try:
            k.start()
            self.assertIn(f"listening on 127.0.0.1:{k.port}", k.read_log())
            self.assertEqual(k.stop(), 0)
        finally:
            k.cleanup()
            pkg.cleanup()


if __name__ == "__main__":
    unittest.main()
