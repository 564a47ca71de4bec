# The two commands of the README:  make demo  and  make test.
# Both create .venv and install into it on first use; later runs reuse it
# until pyproject.toml changes.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.selfmis-installed
export TF_CPP_MIN_LOG_LEVEL := 3

.PHONY: demo test install model bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[train,convert,edge,dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/selfmis demo

test: $(STAMP)
	$(PY) -m pytest -q

# Rebuild the shipped model from scratch on the PTB-XL subset (teacher, then student).
model: $(STAMP)
	$(VENV)/bin/selfmis train --method selfmis --out artifacts/selfmis_lead1.pt
	$(VENV)/bin/selfmis quantize --teacher artifacts/selfmis_lead1.pt --out edge_runtime/models/default

bench: $(STAMP)
	$(VENV)/bin/selfmis bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
