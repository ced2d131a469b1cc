# llmroute-catalog (tools/llmroute-catalog/): the price and health feed, and
# the deployment checks.  Included by the root Makefile; also runs alone
# from the repository root:
#
#   make -f tools/catalog.mk catalog-tool        -> build/tools/llmroute-catalog
#   make -f tools/catalog.mk test-catalog        tool + example-config tests
#   make -f tools/catalog.mk docker-build-check  module from nginx source
#                                                (--with-compat), loaded by
#                                                /usr/sbin/nginx
#   make -f tools/catalog.mk test-deploy         all of the above + k8s YAML

CATALOG_MK   := $(abspath $(lastword $(MAKEFILE_LIST)))
CATALOG_ROOT := $(patsubst %/tools/catalog.mk,%,$(CATALOG_MK))
CATALOG_DIR  := $(CATALOG_ROOT)/tools/llmroute-catalog
CATALOG_OUT  := $(CATALOG_ROOT)/build/tools
CATALOG_BIN  := $(CATALOG_OUT)/llmroute-catalog

CATALOG_CC      ?= cc
CATALOG_CFLAGS  ?= -O2 -g -Wall -Wextra -Werror -D_GNU_SOURCE
CATALOG_LDLIBS  := -lcurl -lyajl -lhiredis
CATALOG_SRCS    := $(CATALOG_DIR)/main.c $(CATALOG_DIR)/source.c \
                   $(CATALOG_DIR)/probe.c $(CATALOG_DIR)/redis.c \
                   $(CATALOG_DIR)/util.c $(CATALOG_DIR)/reprice.c
# reprice runs the module's own selection code, built standalone as
# classify_report builds it (no second implementation of the rules)
CATALOG_MODSRC  := $(CATALOG_ROOT)/ngx_http_llmroute_module
include $(CATALOG_MODSRC)/standalone.mk
CATALOG_CORE    := $(CATALOG_ROOT)/tools/catalog_conf.c $(LLMROUTE_CORE_SRCS)

CATALOG_PYTHON ?= /usr/bin/python3
CATALOG_PYTEST ?= $(CATALOG_PYTHON) -m pytest -q -p no:cacheprovider

.PHONY: catalog-tool test-catalog docker-build-check test-deploy

catalog-tool: $(CATALOG_BIN)

$(CATALOG_BIN): $(CATALOG_SRCS) $(CATALOG_CORE) $(CATALOG_DIR)/llmroute_catalog.h \
                $(CATALOG_MODSRC)/ngx_http_llmroute_core.h \
                $(CATALOG_MODSRC)/ngx_http_llmroute_scan.h \
                $(CATALOG_ROOT)/tools/catalog_conf.h \
                $(CATALOG_MODSRC)/ngx_http_llmroute_classify_weights.h
	@mkdir -p $(CATALOG_OUT)
	$(CATALOG_CC) $(CATALOG_CFLAGS) -DNGX_HTTP_LLMROUTE_STANDALONE \
	    -I $(CATALOG_MODSRC) -I $(CATALOG_ROOT)/tools -o $@ \
	    $(CATALOG_SRCS) $(CATALOG_CORE) $(CATALOG_LDLIBS)

test-catalog: $(CATALOG_BIN)
	cd $(CATALOG_ROOT) && $(CATALOG_PYTEST) t/test_catalog_tool.py \
	    t/test_conf_examples.py

# builds nginx $(NGINX_VERSION) from source with --with-compat plus the
# module, then checks that Debian's /usr/sbin/nginx loads the .so (skips,
# with the reason, when the source cannot be fetched)
docker-build-check:
	cd $(CATALOG_ROOT) && $(CATALOG_PYTEST) -rs t/test_docker_build.py

test-deploy: test-catalog docker-build-check
	cd $(CATALOG_ROOT) && $(CATALOG_PYTEST) t/test_k8s_manifests.py
