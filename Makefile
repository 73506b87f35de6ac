# The two quick-start commands (run as root on Debian/Ubuntu): `make demo`, `make test`.
# Each installs what is missing first: Debian packages, then a .venv with netprobe in it.
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
APT_PKGS := nftables iptables ipset iproute2 kmod procps tcpdump iputils-ping openssl util-linux prometheus chromium chromium-driver
SCENARIO ?= demo

.PHONY: deps demo test unit bench man clean

deps: $(STAMP)

$(STAMP): pyproject.toml
	@missing=""; \
	for pkg in $(APT_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  guard=""; if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; \
	    chmod 755 /usr/sbin/policy-rc.d; guard=1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  rc=$$?; [ -z "$$guard" ] || rm -f /usr/sbin/policy-rc.d; \
	  case " $$missing " in *" prometheus "*) systemctl disable --now prometheus >/dev/null 2>&1 || true;; esac; \
	  [ $$rc -eq 0 ] || exit $$rc; \
	fi
	@test -x $(PY) || python3 -m venv $(VENV) || { rm -rf $(VENV); \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv && python3 -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

demo: deps
	$(VENV)/bin/netprobe lab run $(SCENARIO)

test: deps
	@# vagrant only validates the Vagrantfile in the tests; Debian's package installs offline
	@command -v vagrant >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends vagrant; }
	$(PY) -m pytest -q

unit: deps
	$(PY) -m pytest -q tests/unit tests/io

bench: deps
	@# nmap only for the side-by-side figure in mesh_scale.py
	@command -v nmap >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nmap; }
	$(PY) bench/probe_rate.py
	$(PY) bench/mesh_scale.py

man: deps
	$(VENV)/bin/netprobe man > docs/netprobe.1

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
