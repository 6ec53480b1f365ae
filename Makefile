# Two commands: `make demo` (install and run the main job) and `make test` (install and run the tests).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Tests never reach the network: Hugging Face offline, every HTTP(S) client sent to a closed port.
TEST_ENV := HF_HUB_OFFLINE=1 HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 \
	http_proxy=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9 NO_PROXY= no_proxy=

.PHONY: demo test install install-test mmdet clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PY) -m pip install -e '.[test,detection]'
	touch $@ $(VENV)/.installed

# the optional mmdet 3.3 engine: builds mmcv 2.1 from source once per machine (about 6-8 minutes)
$(VENV)/.installed-mmdet: tools/build_mmcv.sh | $(VENV)/.installed-test
	bash tools/build_mmcv.sh $(VENV)
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test
mmdet: $(VENV)/.installed-mmdet

demo: $(VENV)/.installed
	$(VENV)/bin/zoo bench --batch-size 1 8 --channels-last --max-seconds 1 --csv bench.csv --plot bench.png

test: $(VENV)/.installed-test
	$(TEST_ENV) $(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) bench.csv bench.png bench.json .pytest_cache
