#!/usr/bin/env python3
"""Clients that misbehave, for scripts/test-sse.sh (standard library only).

    bad_client.py HOST PORT CHECK [ARGS]

CHECK is one of:
  malformed               garbage request lines and headers each get 400
  huge-headers            64 KiB of headers, and 2000 small ones, each get 431
  slowloris TIMEOUT       a client trickling its request one byte at a time
                          gets 408 after about TIMEOUT seconds, and a good
                          client (curl) on /stream meanwhile is served in full,
                          long before that
  over-bound              with the server's --max-clients 1: a second client
                          gets 503 while a first one streams
Prints what it saw; exits 0 if the check holds.
"""
import socket
import subprocess
import sys
import threading
import time

HOST, PORT, CHECK = sys.argv[1], int(sys.argv[2]), sys.argv[3]


def read_all(s):
    data = b""
    while True:
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            break
        data += chunk
    return data


def status_of(resp):
    try:
        return int(resp.split(b"\r\n", 1)[0].split()[1])
    except (IndexError, ValueError):
        return 0


def exchange(data, timeout=10):
    s = socket.create_connection((HOST, PORT), timeout=timeout)
    try:
        s.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass
    resp = read_all(s)
    s.close()
    return status_of(resp), resp


def expect_all(cases, want):
    ok = True
    for name, data in cases:
        got, resp = exchange(data)
        print(f"{name}: {got} (want {want})")
        ok &= got == want
    return ok


def malformed():
    return expect_all([
        ("garbage line", b"GARBAGE\r\n\r\n"),
        ("header without a colon", b"GET / HTTP/1.1\r\nBad Header Line\r\n\r\n"),
        ("control bytes", b"\x00\x01\x02\x03\r\n\r\n"),
        ("bad version", b"GET / HTTP/x.y\r\n\r\n"),
        ("space in the method", b"G ET / HTTP/1.1\r\n\r\n"),
    ], 400)


def huge_headers():
    one = b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 65536 + b"\r\n\r\n"
    many = b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(2000)) + b"\r\n"
    return expect_all([("one 64 KiB header", one), ("2000 headers", many)], 431)


def slowloris(timeout):
    result = {}

    def loris():
        t0 = time.monotonic()
        s = socket.create_connection((HOST, PORT), timeout=timeout * 4 + 5)
        s.sendall(b"GET / HTTP/1.1\r\nHost: slow\r\nX-Slow: ")
        s.settimeout(timeout / 10)
        resp = b""
        while time.monotonic() - t0 < timeout * 4 + 5:
            try:
                s.sendall(b"z")
            except (BrokenPipeError, ConnectionResetError):
                break
            try:
                chunk = s.recv(4096)
            except socket.timeout:
                continue
            except ConnectionResetError:
                break
            resp += chunk
            if not chunk or b"\r\n\r\n" in resp:
                break
        result["loris"] = (status_of(resp), time.monotonic() - t0, time.monotonic())
        s.close()

    t = threading.Thread(target=loris)
    t.start()
    time.sleep(timeout / 5)
    t0 = time.monotonic()
    out = subprocess.run(["curl", "-sN", "--max-time", str(timeout * 4 + 5),
                          f"http://{HOST}:{PORT}/stream"], capture_output=True, text=True)
    good_end = time.monotonic()
    good = good_end - t0
    t.join()
    st, took, loris_end = result.get("loris", (0, 0, 0))
    done = "event: done" in out.stdout and out.stdout.startswith("event: init")
    print(f"slowloris: {st} after {took:.2f} s (timeout {timeout} s)")
    print(f"good client: curl exit {out.returncode}, stream {'complete' if done else 'INCOMPLETE'}, "
          f"{good:.2f} s, {'before' if good_end < loris_end else 'AFTER'} the slowloris' answer")
    return (st == 408 and timeout * 0.95 <= took < timeout * 3 + 1 and out.returncode == 0
            and done and good_end < loris_end and good < timeout)


def over_bound():
    first = socket.create_connection((HOST, PORT), timeout=10)
    first.sendall(b"GET /stream HTTP/1.1\r\nHost: first\r\n\r\n")
    got = b""
    while b"event: init" not in got:
        chunk = first.recv(4096)
        if not chunk:
            break
        got += chunk
    t0 = time.monotonic()
    st, _ = exchange(b"GET / HTTP/1.1\r\nHost: second\r\n\r\n")
    took = time.monotonic() - t0
    first.close()
    print(f"first client streaming: {b'event: init' in got}; second client: {st} after {took:.3f} s")
    return b"event: init" in got and st == 503 and took < 1


checks = {
    "malformed": malformed,
    "huge-headers": huge_headers,
    "slowloris": lambda: slowloris(float(sys.argv[4])),
    "over-bound": over_bound,
}
sys.exit(0 if checks[CHECK]() else 1)
