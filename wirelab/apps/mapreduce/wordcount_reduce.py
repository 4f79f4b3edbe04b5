#!/usr/bin/env python3
"""Word count reducer: sums the counts of each key on (key-sorted) stdin.

Input lines are ``key<TAB>count``; output one ``key<TAB>total`` per key, in
input order. Bytes in, bytes out.
"""
import itertools
import sys


def key(line):
    return line.split(b"\t", 1)[0]


out = sys.stdout.buffer
for word, lines in itertools.groupby(sys.stdin.buffer, key=key):
    total = sum(int(line.split(b"\t", 1)[1]) for line in lines)
    out.write(word + b"\t" + str(total).encode() + b"\n")
