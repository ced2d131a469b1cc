# The labeled corpus: corpus/asks.jsonl (in the repository) expanded into
# request bodies bare and wrapped in real agent scaffolding.  Included by the
# root Makefile; also runs alone from the repository root:
#
#   make -f tools/corpus.mk corpus          capture (once), expand, sessions,
#                                           check
#   make -f tools/corpus.mk corpus-asks     rebuild corpus/asks.jsonl from
#                                           corpus/src/ (after editing them)
#   make -f tools/corpus.mk corpus-capture  re-run the CLI capture
#   make -f tools/corpus.mk corpus-check CORPUS_DEV=held-out.jsonl
#                                           also prove no ask overlaps a
#                                           held-out labeled set
#
# The capture runs the pinned agent CLIs in t/node (scripts/deps.sh installs
# them) against a local mock; what they send is the vendors' prompt text, so
# it stays in build/corpus/scaffold and is never committed.

CORPUS_MK   := $(abspath $(lastword $(MAKEFILE_LIST)))
CORPUS_ROOT := $(patsubst %/tools/corpus.mk,%,$(CORPUS_MK))
CORPUS_OUT  := $(CORPUS_ROOT)/build/corpus
CORPUS_PY   ?= python3
CORPUS_SEED ?= 11
CORPUS_DEV  ?=
CORPUS_CHECK = $(CORPUS_PY) $(CORPUS_ROOT)/tools/corpus/check.py \
               $(if $(CORPUS_DEV),--dev $(CORPUS_DEV))

.PHONY: corpus corpus-asks corpus-capture corpus-check

corpus: $(CORPUS_OUT)/scaffold/.done
	$(CORPUS_PY) $(CORPUS_ROOT)/tools/corpus/expand.py
	$(CORPUS_PY) $(CORPUS_ROOT)/tools/corpus/sessions.py --seed $(CORPUS_SEED)
	$(CORPUS_CHECK)

# captured once; a failed capture leaves no .done, so the next run retries
$(CORPUS_OUT)/scaffold/.done:
	@test -x $(CORPUS_ROOT)/t/node/node_modules/.bin/claude || \
	    { echo "corpus: no Claude Code CLI in t/node (run scripts/deps.sh)"; \
	      exit 1; }
	$(CORPUS_PY) $(CORPUS_ROOT)/tools/corpus/capture.py \
	    -o $(CORPUS_OUT)/scaffold
	@touch $@

corpus-capture:
	rm -f $(CORPUS_OUT)/scaffold/.done
	$(MAKE) -f $(CORPUS_MK) $(CORPUS_OUT)/scaffold/.done

corpus-asks:
	$(CORPUS_PY) $(CORPUS_ROOT)/tools/corpus/make_asks.py

corpus-check:
	$(CORPUS_CHECK)
