# The two commands (README): `make demo` runs the main job, `make test` runs every test tier.
# Both set up whatever this machine is missing first; heavy outputs are cached outside the
# repository in $(APPLIANCE_CACHE), keyed on their inputs.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

export APPLIANCE_CACHE ?= $(HOME)/.cache/appliance
# The CPU torch wheel is not on PyPI; a shared folder beside the checkout may carry it.
SHARED_WHEELS := $(wildcard $(abspath $(CURDIR)/../shared/wheels))
export PIP_FIND_LINKS := $(strip $(PIP_FIND_LINKS) $(SHARED_WHEELS))
export PYTHONUNBUFFERED := 1

VENV = $(shell scripts/setup.sh --print-venv)

.PHONY: help setup demo test lint unit integration lab soak

help:
	@echo "make demo   set up this machine, build every component, summarise"
	@echo "make test   set up this machine, lint, run the unit, integration and lab tiers"
	@echo "make lint | unit | integration | lab   one part of make test"
	@echo "make soak   the site under every fault of the soak test (long; supplied OpenZiti)"

setup:
	@scripts/setup.sh

demo: setup
	@scripts/demo.sh "$(VENV)"

test: setup
	@scripts/test.sh "$(VENV)"

lint: setup
	@scripts/test.sh "$(VENV)" --lint-only

unit integration lab: setup
	@scripts/test.sh "$(VENV)" -m $@

# The soak test with its whole fault table (make test runs its short form); some of its
# faults only: APPLIANCE_SOAK_FAULTS="name,name" make soak.
soak: setup
	@APPLIANCE_SOAK_FAULTS="$${APPLIANCE_SOAK_FAULTS:-all}" scripts/test.sh "$(VENV)" -m lab tests/lab/test_soak_lab.py
