# Stellar-Bench: the two set-up commands.
#   make demo   build the real-photo demo dataset, run the sanity methods, check (offline)
#   make test   the offline test suite
# Both create .venv if absent and install what they need. Override PYTHON or TORCH_SPEC if needed.
PYTHON ?= python3
VENV ?= .venv
# CUDA builds (3.2 GB of the 6.6 GB venv); no CPU torch that pairs with a torchvision is in the package
# store (README "A fresh clone"): override TORCH_SPEC with a CPU index where one is reachable.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PIP = $(VENV)/bin/pip
STAMP = $(VENV)/.stellar-installed

.PHONY: demo test install clean chromium

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_SPEC)
	$(PIP) install -q -e '.[dev]'
	$(PIP) install -q --no-deps facenet-pytorch==2.6.0  # test-only parity oracle (pins an old torch)
	$(PIP) install -q --no-deps dreamsim==0.2.1  # test-only parity oracle of our DreamSim loader (the package's own loading needs torch.hub)
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/stellar demo --out demo-out

# the human-study browser test drives the system Chromium (playwright cannot download browsers here)
chromium:
	@command -v chromium >/dev/null 2>&1 || { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; else echo "chromium missing (not root / no apt): the browser tests will be skipped"; fi; }

test: $(STAMP) chromium
	HF_HUB_OFFLINE=1 STELLAR_OFFLINE=1 $(VENV)/bin/python -m pytest -q

clean:
	rm -rf demo-out .pytest_cache
