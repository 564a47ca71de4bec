# The two commands of the README:  make demo  and  make test.
# Both create .venv and install into it on first use; later runs reuse it
# until pyproject.toml changes.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.selfmis-installed
export TF_CPP_MIN_LOG_LEVEL := 3

.PHONY: demo test install model bench clean

# The list of package files: when a file is added or removed, the editable tree is re-linked.
FILES  := $(VENV)/.selfmis-files
$(shell mkdir -p $(VENV) && git ls-files -co --exclude-standard core train quantize edge_runtime \
          firmware_bridge benchmarks 2>/dev/null | sort > $(FILES).new && \
          (cmp -s $(FILES).new $(FILES) || mv $(FILES).new $(FILES)); rm -f $(FILES).new)
LINKED := $(VENV)/.selfmis-linked

# editable_mode=strict installs a real `selfmis/` tree of links under build/, so
# `selfmis.train` resolves to train/ for Python, import-linter, IDEs and type checkers
# alike (setuptools' default editable finder hides the package-dir mapping from them).
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[train,convert,edge,dev]' --config-settings editable_mode=strict
	@touch $(STAMP) $(LINKED)

$(LINKED): $(STAMP) $(FILES)
	$(PY) -m pip install -q --no-deps -e . --config-settings editable_mode=strict
	@touch $(LINKED)

install: $(LINKED)

demo: $(LINKED)
	$(VENV)/bin/selfmis demo

test: $(LINKED)
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

# Rebuild the shipped model from scratch on the PTB-XL subset (teacher, then student).
model: $(LINKED)
	$(VENV)/bin/selfmis train --method selfmis --out artifacts/selfmis_lead1.pt
	$(VENV)/bin/selfmis quantize --teacher artifacts/selfmis_lead1.pt --out edge_runtime/models/default

bench: $(LINKED)
	$(VENV)/bin/selfmis bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
