# wirelab: run as root (in a root shell, or sudo make <target>). `make help` lists the targets.
# Once set up, every target but setup/test/unit/validate-vagrant is also a `wirelab` subcommand.
SHELL := /bin/bash
PY := .venv/bin/python
WIRELAB := .venv/bin/wirelab

.PHONY: help setup demo test unit clean-net bench routing traceroute backbone packets tcp_recovery heartbeats mapreduce internet_services preflight report validate-vagrant clean

help:  ## list the targets
	@awk -F":.*## " '/^[a-z_-]+:.*## /{printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup:  ## install apt packages, the pinned Python venv (.venv) and the wirelab command; idempotent
	@bash scripts/setup.sh

demo:  ## the main job (wirelab suite): every experiment, then results/report/<time>/index.html
	@bash scripts/demo.sh

test: ## set up, then run all tests (netem tests inside User-Mode Linux if the kernel lacks sch_netem)
	@bash scripts/test.sh

unit: .venv/bin/python  ## only the unit tests (no root needed once set up)
	$(PY) -m pytest tests/unit

preflight: $(WIRELAB)  ## can this machine run wirelab? (root, mininet, tools, sch_netem)
	$(WIRELAB) preflight

report: $(WIRELAB)  ## render the newest results/report/<time>/ again (index.html, report.md)
	$(WIRELAB) report

.venv/bin/python $(WIRELAB):
	@echo "wirelab: not set up yet: run 'make setup' (as root) first" >&2; exit 3

clean-net: $(WIRELAB)  ## remove exactly what crashed runs left behind (processes, namespaces, links)
	@$(WIRELAB) clean

bench: setup  ## benchmarks: topology start/stop vs bare Mininet, pcap analysis and message rebuild speed, rebuild vs logs under netem, MapReduce job time
	$(PY) bench/bench_topology.py
	$(PY) bench/bench_pcap.py
	$(PY) bench/bench_messages.py
	$(PY) bench/bench_rebuild_impaired.py
	$(PY) bench/bench_mapreduce.py

routing: setup  ## longest-prefix match on every router of `internet`, kernel vs reference
	$(WIRELAB) run routing

traceroute: setup  ## traceroute hop lists and TTLs on `line` and `internet`
	$(WIRELAB) run traceroute

backbone: setup  ## traceroute across Abilene: shortest-delay path, RTT >= 2 x fibre delay, hops geolocated, a map
	$(WIRELAB) run backbone

packets: setup  ## message sizes and MTU, IP fragments, path MTU discovery and its black hole, a shared link
	$(WIRELAB) run packets

tcp_recovery: setup  ## TCP under loss, reordering, duplication: proof from pcaps
	$(WIRELAB) run tcp_recovery

heartbeats: setup  ## GFS-style UDP heartbeats: loss/dup/reorder vs netem, fixed-k vs phi accrual, a partition, TCP vs UDP
	$(WIRELAB) run heartbeats

mapreduce: setup  ## MapReduce (P4 protocol) under loss, a killed and a partitioned worker: proof from pcaps
	$(WIRELAB) run mapreduce

internet_services: setup  ## DHCP, the resolver, DNS, NAT and what-is-my-IP, as a joining laptop sees them
	$(WIRELAB) run internet_services

validate-vagrant:  ## check the Vagrantfile (no box needed)
	vagrant validate -p

clean:  ## remove results, the venv and this checkout's /usr/local/bin/wirelab link (not apt packages)
	rm -rf results .venv .setup-stamp
	@if [ "$$(readlink /usr/local/bin/wirelab)" = "$(CURDIR)/.venv/bin/wirelab" ]; then rm -f /usr/local/bin/wirelab; fi
