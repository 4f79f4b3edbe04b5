"""The network layer: namespaces, nodes, the Testbed that owns a running network, addressing, the run ledger, cleanup, preflight and User-Mode Linux."""
