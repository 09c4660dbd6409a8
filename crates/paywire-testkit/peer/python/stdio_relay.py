"""Relays stdin/stdout to a TCP connection: lets an MCP client that speaks the stdio transport
(it spawns a server process and talks over its stdin/stdout) reach a server a test serves on a
socket in-process (the same line-delimited JSON-RPC stream as on real pipes).

Usage: python stdio_relay.py <port>   (connects to 127.0.0.1:<port>; exits when either side closes)
"""

import socket
import sys
import threading


def pump(read, write, done):
    try:
        while True:
            chunk = read(65536)
            if not chunk:
                break
            write(chunk)
    except OSError:
        pass
    finally:
        done.set()


def main():
    conn = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    stdin = sys.stdin.buffer
    stdout = sys.stdout.buffer

    def to_stdout(chunk):
        stdout.write(chunk)
        stdout.flush()

    done = threading.Event()
    threading.Thread(target=pump, args=(stdin.read1, conn.sendall, done), daemon=True).start()
    threading.Thread(target=pump, args=(conn.recv, to_stdout, done), daemon=True).start()
    done.wait()
    conn.close()


if __name__ == "__main__":
    main()
