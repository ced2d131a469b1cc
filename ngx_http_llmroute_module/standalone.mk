# The decision's core as the tools outside nginx build it
# (-DNGX_HTTP_LLMROUTE_STANDALONE): classify_report, llmroute-catalog's
# reprice, bench/micro and the fuzzers compile these files.  One list, so
# a file the core gains is added once.
LLMROUTE_CORE_DIR  := $(dir $(lastword $(MAKEFILE_LIST)))
LLMROUTE_CORE_SRCS := $(addprefix $(LLMROUTE_CORE_DIR)ngx_http_llmroute_, \
                          json.c scan.c classify.c ask.c route.c)
