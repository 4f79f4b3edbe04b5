# wirelab: run as root (sudo make <target>). `make help` lists the targets.
SHELL := /bin/bash
PY := .venv/bin/python

.PHONY: help setup demo test unit clean-net bench routing traceroute tcp_recovery preflight validate-vagrant clean

help:  ## list the targets
	@awk -F":.*## " '/^[a-z_-]+:.*## /{printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup:  ## install apt packages and the pinned Python venv (.venv); idempotent
	@bash scripts/setup.sh

demo:  ## the main job: every experiment on its default topology, then a report under results/
	@bash scripts/demo.sh

test: ## set up, then run all tests (netem tests inside User-Mode Linux if the kernel lacks sch_netem)
	@bash scripts/test.sh

unit: .venv/bin/python  ## only the unit tests (no root needed once set up)
	$(PY) -m pytest tests/unit

preflight: .venv/bin/python  ## can this machine run wirelab? (root, mininet, tools, sch_netem)
	$(PY) -m wirelab.net.preflight

.venv/bin/python:
	@echo "wirelab: not set up yet: run 'sudo make setup' first" >&2; exit 3

clean-net:  ## remove exactly what crashed runs left behind (processes, namespaces, links)
	@$(PY) -m wirelab.net.clean

bench: setup  ## benchmarks: topology start/stop vs bare Mininet, pcap analysis speed
	$(PY) bench/bench_topology.py
	$(PY) bench/bench_pcap.py

routing: setup  ## longest-prefix match on every router of `internet`, kernel vs reference
	./experiments/routing.py

traceroute: setup  ## traceroute hop lists and TTLs on `line` and `internet`
	./experiments/traceroute.py

tcp_recovery: setup  ## TCP under loss, reordering, duplication: proof from pcaps
	./experiments/tcp_recovery.py

validate-vagrant:  ## check the Vagrantfile (no box needed)
	vagrant validate -p

clean:  ## remove results and the venv (not apt packages)
	rm -rf results .venv .setup-stamp
