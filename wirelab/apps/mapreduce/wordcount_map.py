#!/usr/bin/env python3
"""Word count mapper: ``word<TAB>1`` for every whitespace-separated word on stdin.

Bytes in, bytes out: any encoding passes through, and words split where
``bytes.split()`` splits (ASCII whitespace), as the tests' reference does.
"""
import sys

out = sys.stdout.buffer
for line in sys.stdin.buffer:
    for word in line.split():
        out.write(word + b"\t1\n")
