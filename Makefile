# ngx_http_llmroute_module — developer entry points.
#   make run     build and run the gateway on 127.0.0.1:8080 (demo providers
#                when no API keys are set)
#   make test    build and run every test (C unit tests, classifier report,
#                fuzz regressions, nginx tests)
#   make -C fuzz fuzz FUZZ_SECONDS=60   fuzz the request and usage parsers
#   scripts/test-asan.sh                the nginx tests against an ASan build
#   make soak    the long soak (10 min; SOAK_SECONDS=N to change)

PYTHON ?= /usr/bin/python3
PYTEST ?= $(PYTHON) -m pytest

.PHONY: all deps build run test test-unit test-nginx classify-report bench soak \
        micro clean

all: build

deps:
	@./scripts/deps.sh

build: deps
	./build.sh

run: build
	./scripts/run-gateway.sh

test: build
	$(MAKE) test-unit
	$(MAKE) classify-report
	$(MAKE) -C fuzz regress
	$(MAKE) test-nginx

test-unit:
	@if [ -f t/unit/Makefile ]; then $(MAKE) -C t/unit test; fi

test-nginx:
	$(PYTEST) -q -p no:cacheprovider t

-include tools/classify.mk
-include tools/catalog.mk
-include tools/corpus.mk

bench: build
	./bench/run.sh

micro:
	$(MAKE) -C bench micro

clean:
	rm -rf build build-asan

# the long soak (not in `make test`): SOAK_SECONDS=600 by default
soak: build
	SOAK_LONG=1 SOAK_SECONDS=$${SOAK_SECONDS:-600} $(PYTEST) -s -q \
	    -p no:cacheprovider t/test_soak.py -k soak_long
