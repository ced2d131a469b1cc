"""The module's dynamic symbol table (issue 16): nginx's loader looks up
ngx_modules, ngx_module_names and ngx_module_order in the .so and nothing
else, so the module exports only those (its headers hide its own symbols,
config's version script keeps anything else local).  Its own functions are
then called directly, not through the PLT.
"""

import re
import shutil
import subprocess

import pytest

from llmroute_harness import CHAT, MODULE_PATH, post_json

LOADER_NAMES = {"ngx_modules", "ngx_module_names", "ngx_module_order"}


def tool(name):
    path = shutil.which(name)
    if path is None:
        pytest.skip("%s (binutils) is not installed" % name)
    return path


def test_the_module_exports_only_what_the_loader_needs(routed):
    # loaded by nginx and routing: the loader found what it needs
    r = routed()
    resp = post_json(r.port, CHAT, b'{"model":"auto","messages":'
                     b'[{"role":"user","content":"hi"}]}',
                     {"X-LLMRoute-Tier": "simple"})
    assert resp.header("X-LLMRoute-Model") == "small-1", resp

    out = subprocess.run([tool("nm"), "-D", "--defined-only", MODULE_PATH],
                         capture_output=True, text=True, check=True).stdout
    names = {line.split()[-1] for line in out.splitlines() if line.strip()}
    assert names == LOADER_NAMES, sorted(names - LOADER_NAMES)


def test_the_module_calls_its_own_functions_directly():
    out = subprocess.run([tool("objdump"), "-d", MODULE_PATH],
                         capture_output=True, text=True, check=True).stdout
    through_plt = set(re.findall(r"call.*<(ngx_http_llmroute\w*)@plt>", out))
    assert through_plt == set(), sorted(through_plt)
    # the module's globals are not read through the GOT either
    relocs = subprocess.run([tool("objdump"), "-R", MODULE_PATH],
                            capture_output=True, text=True, check=True).stdout
    named = [line for line in relocs.splitlines()
             if re.match(r"[0-9a-f]+ ", line) and "ngx_http_llmroute" in line]
    assert named == [], named
