# Quick start:  make run   (installs what is missing, builds the default kernel, boots, runs all scenarios)
#               make test  (fast tests, then real-boot tests)
APT_PACKAGES := python3 python3-venv qemu-system-x86 linux-source-6.12 flex bison bc libelf-dev libssl-dev dwarves cpio kmod ccache lz4 gcc make git
VENV := .venv
PY := $(VENV)/bin/python
HARNESS := $(VENV)/bin/harness
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run deps apt venv test test-fast test-boot lint bench kernels clean

# Exit 1 = every scenario got a verdict and some failed (6.12 has bugs the
# scenarios target): that is a result, in results/junit.xml, not a failure of
# `make run`. Exit 4 = some scenarios got no verdict: `make run` fails.
run: deps
	@rc=0; $(HARNESS) run || rc=$$?; \
	case $$rc in \
	0|1) ;; \
	4) echo "make run: FAILED: some scenarios got no verdict (see the 'no verdict:' lines above);" \
		"console log: results/console.log, per boot: results/boots/" >&2; exit 4 ;; \
	*) echo "make run: FAILED: harness run exited $$rc (2 bad input, 3 config/build, 5 nothing tested;" \
		"build log: results/build.log)" >&2; exit $$rc ;; \
	esac

deps: apt venv

apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		$(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

test: deps
	$(PY) -m pytest -m "not boot" -q
	$(PY) -m pytest -m boot -q --capture=sys --durations=0

test-fast: venv
	$(PY) -m pytest -m "not boot" -q

test-boot: deps
	$(PY) -m pytest -m boot -q --capture=sys --durations=0

lint: venv
	$(VENV)/bin/ruff check harness guest tests benchmarks

bench: deps
	$(PY) benchmarks/bench.py

# The kernel matrix: Debian's linux-source 6.1, 6.12 and 7.3, each fetched once (private
# apt setup), built and run with every scenario; writes benchmarks/kernels.json
kernels: deps
	$(PY) benchmarks/kernels.py

clean:
	rm -rf results
