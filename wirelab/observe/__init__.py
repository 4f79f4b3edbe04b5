"""Observation: packet captures, the pcap reader and TCP analyser, the impairment ledger, tool-output parsers."""
