"""Workloads that run on emulated hosts: servers that say READY and print JSON lines, and their clients."""
