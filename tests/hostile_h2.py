"""Raw HTTP/2 calls for tests/hostile.rs: what a gRPC client library will not
send (wrong content-type, the compressed flag without an encoding, non-ASCII
metadata). Uses the independent `h2` implementation over Python's ssl.

usage: hostile_h2.py HOST PORT CA_FILE CASE TOKEN CSR_FILE
prints: status=<HTTP :status> grpc-status=<n or -> message=<grpc-message> [reset=<code>|goaway=<code>]
"""
import socket
import ssl
import struct
import sys
import urllib.parse

import h2.connection
import h2.events

host, port, ca, case, token, csr_file = sys.argv[1:7]
csr = open(csr_file, "rb").read()


def message(payload, compressed=False):
    # protobuf: field 1 (csr), bytes.
    body = b"\x0a" + encode_varint(len(payload)) + payload
    return struct.pack(">BI", 1 if compressed else 0, len(body)) + body


def encode_varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


headers = [
    (":method", "POST"),
    (":scheme", "https"),
    (":path", "/securityapi.SecurityService/Certificate"),
    (":authority", f"{host}:{port}"),
    ("content-type", "application/grpc"),
    ("te", "trailers"),
]
body = message(csr)
if case == "content-type":
    headers[4] = ("content-type", "text/plain")
elif case == "compressed":
    body = message(csr, compressed=True)
elif case == "non-ascii-token":
    token = "d8cwfa.é€ü\u00a0token"
elif case != "ok":
    sys.exit(f"unknown case {case}")
# Raw bytes: h2 would refuse to encode some of them as str.
headers.append((b"token", token.encode("utf-8")))

ctx = ssl.create_default_context(cafile=ca)
ctx.set_alpn_protocols(["h2"])
sock = ctx.wrap_socket(socket.create_connection((host, int(port)), timeout=10), server_hostname=host)
conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None, validate_outbound_headers=False))
conn.initiate_connection()
conn.send_headers(1, headers)
conn.send_data(1, body, end_stream=True)
sock.sendall(conn.data_to_send())

status, grpc_status, grpc_message, reset, done = "-", "-", "", "", False
while not done:
    data = sock.recv(65536)
    if not data:
        break
    for event in conn.receive_data(data):
        if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
            for k, v in event.headers:
                k, v = k.decode(), v.decode()
                if k == ":status":
                    status = v
                elif k == "grpc-status":
                    grpc_status = v
                elif k == "grpc-message":
                    grpc_message = urllib.parse.unquote(v)
        if isinstance(event, h2.events.StreamReset):
            reset = f" reset={event.error_code}"
        if isinstance(event, h2.events.ConnectionTerminated):
            reset = f" goaway={event.error_code}"
        if isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset, h2.events.ConnectionTerminated)):
            done = True
    sock.sendall(conn.data_to_send())
print(f"status={status} grpc-status={grpc_status} message={grpc_message}{reset}")
