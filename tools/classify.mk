# The classifier report: the module's own parse -> classify -> select code,
# built standalone, run over a labelled request set.  Included by the root
# Makefile; also runs alone from the repository root:
#
#   make -f tools/classify.mk classify-report [TIERS=file.jsonl]
#       [CATALOG=conf.d/catalog-example.conf] [CLASSIFY_ARGS="-b 512,2048,8192"]
#
# It exits non-zero when accuracy < 0.85, complex recall < 0.95 or the cost
# ratio > 0.40, so CI can run it as a check.

# the repository root, from this file's own path (included or run with -f)
CLASSIFY_MK   := $(abspath $(lastword $(MAKEFILE_LIST)))
CLASSIFY_ROOT := $(patsubst %/tools/classify.mk,%,$(CLASSIFY_MK))
CLASSIFY_SRC  := $(CLASSIFY_ROOT)/ngx_http_llmroute_module
CLASSIFY_OUT  := $(CLASSIFY_ROOT)/build/tools
CLASSIFY_BIN  := $(CLASSIFY_OUT)/classify_report

CLASSIFY_CC     ?= cc
CLASSIFY_CFLAGS ?= -O2 -Wall -Wextra -Werror
CLASSIFY_SRCS   := $(CLASSIFY_ROOT)/tools/classify_report.c \
                   $(CLASSIFY_ROOT)/tools/catalog_conf.c \
                   $(CLASSIFY_SRC)/ngx_http_llmroute_json.c \
                   $(CLASSIFY_SRC)/ngx_http_llmroute_scan.c \
                   $(CLASSIFY_SRC)/ngx_http_llmroute_classify.c \
                   $(CLASSIFY_SRC)/ngx_http_llmroute_route.c

# the labeled dev set lives in the project's shared/ folder, beside the repo
TIERS   ?= $(abspath $(CLASSIFY_ROOT)/../shared/data/tiers-dev.jsonl)
CATALOG ?= $(CLASSIFY_ROOT)/conf.d/catalog-example.conf
CLASSIFY_ARGS ?=

.PHONY: classify-report classify-features

$(CLASSIFY_BIN): $(CLASSIFY_SRCS) $(CLASSIFY_SRC)/ngx_http_llmroute_core.h \
                 $(CLASSIFY_ROOT)/tools/catalog_conf.h \
                 $(CLASSIFY_SRC)/ngx_http_llmroute_scan.h
	@mkdir -p $(CLASSIFY_OUT)
	$(CLASSIFY_CC) $(CLASSIFY_CFLAGS) -DNGX_HTTP_LLMROUTE_STANDALONE \
	    -I $(CLASSIFY_SRC) -I $(CLASSIFY_ROOT)/tools -o $@ $(CLASSIFY_SRCS)

classify-report: $(CLASSIFY_BIN)
	@if [ -f "$(TIERS)" ]; then \
	    $(CLASSIFY_BIN) -c $(CATALOG) $(CLASSIFY_ARGS) $(TIERS); \
	else \
	    echo "classify-report: SKIPPED, no labeled set at $(TIERS)"; \
	fi

# the feature vector of every request, for tuning weights on your traffic
classify-features: $(CLASSIFY_BIN)
	@$(CLASSIFY_BIN) -c $(CATALOG) -f $(CLASSIFY_ARGS) $(TIERS)
