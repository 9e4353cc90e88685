"""A DNS server on a loopback address that records every name it is asked about.

Usage: dns_recorder.py ADDRESS LOG ANSWERED_SUFFIX

Answers A queries for names ending in ANSWERED_SUFFIX with 203.0.113.7 (TEST-NET-3, never
connected to) and everything else with NXDOMAIN. Each query's name is appended to LOG, one
per line, before the answer is sent: what reached this server is what a resolver sent out.
"""

import socket
import sys

address, log_path, suffix = sys.argv[1], sys.argv[2], sys.argv[3].lower()


def question_name(packet):
    labels, at = [], 12
    while at < len(packet) and packet[at] != 0:
        length = packet[at]
        labels.append(packet[at + 1 : at + 1 + length].decode("latin-1"))
        at += 1 + length
    return ".".join(labels), at + 5  # the zero byte, QTYPE and QCLASS


def answer(packet):
    name, end = question_name(packet)
    qtype = int.from_bytes(packet[end - 4 : end - 2], "big")
    known = name.lower().endswith(suffix)
    flags = b"\x81\x80" if known else b"\x81\x83"  # response, recursion; NXDOMAIN if unknown
    answers = 1 if known and qtype == 1 else 0
    header = packet[:2] + flags + b"\x00\x01" + answers.to_bytes(2, "big") + b"\x00\x00\x00\x00"
    body = packet[12:end]
    if answers:
        body += b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + bytes([203, 0, 113, 7])
    return name, header + body


sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((address, 53))
# Ready: the test waits for this line in the log.
with open(log_path, "a") as log:
    log.write("#ready\n")
while True:
    packet, peer = sock.recvfrom(4096)
    if len(packet) < 17:
        continue
    name, reply = answer(packet)
    with open(log_path, "a") as log:
        log.write(name + "\n")
    sock.sendto(reply, peer)
