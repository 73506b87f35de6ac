# The two quick-start commands (run as root on Debian/Ubuntu): `make demo`, `make test`.
# Each installs what is missing first: Debian packages, then a .venv with netprobe in it.
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
APT_PKGS := nftables iptables ipset iproute2 kmod procps tcpdump iputils-ping openssl util-linux prometheus chromium chromium-driver
SCENARIO ?= demo
# the VM lab (tools/vm/): libvirt, qemu (TCG works), vagrant-libvirt, and what builds the box
VM_APT_PKGS := qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients vagrant vagrant-libvirt \
  mmdebstrap grub-pc-bin e2fsprogs fdisk dnsmasq-base iptables openssh-client rsync
VM_SCENARIO ?= routed-stateful

.PHONY: deps demo test unit bench man clean vm-deps vm-test vm-demo

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

# every test: unit, I/O, namespace integration, then the VM lab (make vm-test; NETPROBE_SKIP_VM=1
# leaves the VMs out for a quick run, `make unit` runs the unprivileged tests alone)
test: deps
	@# vagrant only validates the Vagrantfile in the tests; Debian's package installs offline
	@command -v vagrant >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends vagrant; }
	$(PY) -m pytest -q
	@if [ "$${NETPROBE_SKIP_VM:-0}" != 1 ]; then \
	  started=$$(date +%s); $(MAKE) --no-print-directory vm-test && \
	  echo "make test: the VM lab took $$(( $$(date +%s) - started )) s"; \
	fi

unit: deps
	$(PY) -m pytest -q tests/unit tests/io

bench: deps
	@# nmap only for the side-by-side figure in mesh_scale.py
	@command -v nmap >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nmap; }
	$(PY) bench/probe_rate.py
	$(PY) bench/mesh_scale.py
	$(PY) bench/mtu_cost.py

man: deps
	$(VENV)/bin/netprobe man > docs/netprobe.1

# policy-rc.d while installing: no daemon may start in the root namespace (libvirtd runs in npvm-*)
vm-deps: deps
	@missing=""; \
	for pkg in $(VM_APT_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  added=""; [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; added=1; }; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; rc=$$?; \
	  [ -z "$$added" ] || rm -f /usr/sbin/policy-rc.d; exit $$rc; \
	fi

# The VM lab, offline, under qemu's TCG, libvirt in a namespace of its own (tools/vm/vmlab.py):
# VM_SCENARIO's hosts and routers as Debian 12 VMs, the mesh, its expectation, then the VM cells
# compared with `netprobe lab run` of the same scenario (tests/vm). Everything is removed after.
vm-test: vm-deps
	$(PY) tools/vm/vmlab.py run $(VM_SCENARIO) -o vm-result.json
	NETPROBE_VM_RESULT=vm-result.json NETPROBE_VM_SCENARIO=$(VM_SCENARIO) $(PY) -m pytest -q -m vm tests/vm

# The same for a person: SCENARIO=NAME make vm-demo (default: demo), the matrix and the verdict.
vm-demo: vm-deps
	$(PY) tools/vm/vmlab.py run $(SCENARIO) -o vm-result.json

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .vm vm-result.json vm-times.json
