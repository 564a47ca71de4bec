# The two commands of the README:  make demo  and  make test.
# Both create .venv and install into it on first use; later runs reuse it
# until pyproject.toml changes.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.selfmis-installed
export TF_CPP_MIN_LOG_LEVEL := 3

.PHONY: demo test install model bench clean results results-render results-quick

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

# Rebuild the shipped model from scratch on the PTB-XL subset: the SelfMIS teacher (a run folder holding
# model.pt), then the int8 student of the shipped size (dscnn-6k, benchmarks/students.py) and its table.
# A smaller or redirected run (tests/test_make_model.py):  make model DATA=... TEACHER_RUN=... MODEL_OUT=...
#   MODEL_RESULTS=... MODEL_WORK=... TRAIN_ARGS='--epochs 1' QUANTIZE_ARGS='--epochs 1'
TEACHER_RUN    ?= artifacts/selfmis_lead1
MODEL_OUT      ?= edge_runtime/models/default
MODEL_RESULTS  ?= benchmarks/results/quantize
MODEL_WORK     ?= artifacts/quantize
SHIPPED_STUDENT = --stem-channels 12 --blocks 16:2,24:2,32:2,48:2,64:1
DATA_ARG        = $(if $(DATA),--data $(DATA))
model: $(LINKED)
	$(VENV)/bin/selfmis train --method selfmis --out $(TEACHER_RUN) $(DATA_ARG) $(TRAIN_ARGS)
	$(VENV)/bin/selfmis quantize --teacher $(TEACHER_RUN) --out $(MODEL_OUT) --results $(MODEL_RESULTS) \
	  --work $(MODEL_WORK) $(DATA_ARG) $(SHIPPED_STUDENT) $(QUANTIZE_ARGS)

# The committed studies (benchmarks/results/): `make results` lists each with its command and the cost its run
# measured; `make results STUDY=name` regenerates one (its command, then its Markdown from its JSON);
# `make results-render` re-renders every report from its JSON; `make results-quick` re-renders them all and
# runs the cheap studies at quick sizes into artifacts/results-quick (CI-sized).
results: $(LINKED)
	PATH=$(abspath $(VENV))/bin:$$PATH $(PY) -m selfmis.benchmarks.reports $(if $(STUDY),run $(STUDY),list)

results-render: $(LINKED)
	$(PY) -m selfmis.benchmarks.reports render

results-quick: results-render
	PATH=$(abspath $(VENV))/bin:$$PATH $(PY) -m selfmis.benchmarks.reports quick --out artifacts/results-quick

bench: $(LINKED)
	$(VENV)/bin/selfmis bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

# The wearable decides on its own: C chain parity (host, >= 100 records), Cortex-M4F under QEMU
# (memory, instructions), energy model -> benchmarks/results/wearable/ (needs gcc-arm-none-eabi,
# libnewlib-arm-none-eabi, qemu-system-arm; see firmware_bridge/README.md)
.PHONY: target-wearable
target-wearable: $(LINKED)
	$(PY) -m selfmis.benchmarks.wearable

# Fill the nRF52840 sketch folder: chain library, frame encoders, the bundle's plain-C model and the
# parameters generated for the board's sample rate (make wearable-sketch BUNDLE=micro FS=250 EVERY_K=32).
# EVERY_K: every beat is detected, every K-th is scored; 32 is the smallest cadence at which deciding on the
# watch costs 5x less energy than streaming at 54 and at 75 bpm (benchmarks/results/wearable/); EVERY_K=1 decides per beat
BUNDLE ?= micro
FS ?= 250
EVERY_K ?= 32
.PHONY: wearable-sketch
wearable-sketch: $(LINKED)
	$(PY) -m selfmis.firmware_bridge.c_chain --bundle $(BUNDLE) --fs $(FS) --every-k-beats $(EVERY_K) --sketch \
	  --out firmware_bridge/firmware/ad8232_decide

# The gateway on emulated Raspberry Pi images (Debian 12/13 arm64 through qemu-user), installed from the
# wheel and compared with x86 event by event -> benchmarks/results/pi/. Needs root (debootstrap, chroot)
# and the Debian + PyPI registries; about an hour on 2 cores. Options: TARGET_PI_ARGS="--records 10".
.PHONY: target-pi
target-pi: $(LINKED)
	$(PY) -m selfmis.benchmarks.target_pi $(TARGET_PI_ARGS)
