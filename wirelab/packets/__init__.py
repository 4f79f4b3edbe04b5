"""Packets up close: scapy tools that craft, sniff, trace and hand-make a TCP connection."""
