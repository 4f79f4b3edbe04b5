"""Impairments: netem specifications and their netlink form, and targeted faults."""
