# The two commands: `make run` (a simulated locker on this machine) and `make test`.
# Everything they need is installed here, into .venv; nothing is assumed installed by hand.

PYTHON    ?= python3
VENV      ?= .venv
BIN       := $(VENV)/bin
CONFIG    ?= config/simulated.toml
STATE_DIR ?= $(CURDIR)/.state
PYTEST_ARGS ?=

.PHONY: run test setup system-packages test-system-packages install lint typecheck pytest reset clean \
	bench bench-smoke

run: setup system-packages
	@echo "state directory: $(STATE_DIR)  (make reset wipes it)"
	LOCKER_AGENT_STATE_DIR=$(STATE_DIR) $(BIN)/locker-agent run --config $(CONFIG) --demo

test: setup system-packages test-system-packages lint typecheck pytest

# mosquitto: the local broker `make run` starts, and the real broker the tests start
system-packages:
	@bash scripts/ensure-system-packages.sh mosquitto

# systemd: systemd-analyze, which checks the unit file in the tests;
# chromium: the real headless browser the kiosk and dashboard tests drive (never downloaded);
# fonts-dejavu-core: the one system font a bare board has; the kiosk tests show Chromium no other;
# rabbitmq-server: the second, cluster-capable broker the cross-broker tests run against
test-system-packages:
	@bash scripts/ensure-system-packages.sh systemd chromium rabbitmq-server fonts-dejavu-core

# on the locker itself, as root: user, groups, /opt venv, /etc config, systemd unit
install:
	bash scripts/install.sh $(if $(filter-out config/simulated.toml,$(CONFIG)),$(CONFIG),)

setup: $(VENV)/.installed

$(BIN)/python:
	@bash scripts/ensure-system-packages.sh python3-venv
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $@

lint: setup
	$(BIN)/ruff check locker_agent tests
	$(BIN)/lint-imports  # the layering: pyproject.toml [tool.importlinter]

typecheck: setup
	$(BIN)/mypy locker_agent

pytest: setup
	$(BIN)/pytest $(PYTEST_ARGS)

# benchmarks (bench/): the full run rewrites docs/benchmarks.md; the smoke run (CI) writes
# its table to build/benchmarks-smoke.md so a quick, noisy run never replaces the figures
bench: setup system-packages $(VENV)/.bench-installed
	$(BIN)/python -m bench

bench-smoke: setup system-packages $(VENV)/.bench-installed
	$(BIN)/python -m bench --smoke

$(VENV)/.bench-installed: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
	@touch $@

reset:
	rm -rf $(STATE_DIR)

clean: reset
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
