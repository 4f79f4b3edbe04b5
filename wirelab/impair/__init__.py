"""Impairments, applied through the Testbed as handles it owns.

units.py          tc's units (20ms, 1%, 10mbit) parsed and printed
distributions.py  iproute2's delay distribution tables
spec.py           NetemSpec: one direction's impairment, validated
netlink.py        netem's RTM_NEWQDISC options, encoded and decoded
qdisc.py          NetemHandle: a root netem qdisc, read back, counted, removed
faults.py         targeted faults (drop the Nth data segment, a SYN-ACK, a FIN)
nft.py            ...their nftables rules;  xtables.py  ...their legacy xtables rules
impairments.py    FaultHandle and Impairments: a Testbed's live handles
"""
