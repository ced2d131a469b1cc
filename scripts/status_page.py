#!/usr/bin/env python3
"""Writes ngx_http_llmroute_status_page.h (the llmroute_status page as a C
string) from ngx_http_llmroute_status.html, its source.  Edit the .html,
then run this; --check exits 1 when the header is stale (a test runs it).
"""

import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "ngx_http_llmroute_module"
HTML = SRC / "ngx_http_llmroute_status.html"
HEADER = SRC / "ngx_http_llmroute_status_page.h"
WIDTH = 72

HEAD = """
/*
 * Copyright (C) ngx_http_llmroute_module authors
 *
 * The llmroute_status page: one self-contained HTML document (inline CSS
 * and JS, nothing fetched from elsewhere) that polls ?format=json.
 * Generated from ngx_http_llmroute_status.html by scripts/status_page.py.
 */


#ifndef _NGX_HTTP_LLMROUTE_STATUS_PAGE_H_INCLUDED_
#define _NGX_HTTP_LLMROUTE_STATUS_PAGE_H_INCLUDED_


static const char  ngx_http_llmroute_status_page[] =
"""

TAIL = """;


#endif /* _NGX_HTTP_LLMROUTE_STATUS_PAGE_H_INCLUDED_ */
"""


def header(html):
    out = [HEAD]
    for line in html.split("\n"):
        if not line:
            continue
        esc = line.replace("\\", "\\\\").replace('"', '\\"') + "\\n"
        while esc:
            cut = min(WIDTH, len(esc))
            # never end a piece inside an escape sequence
            while cut < len(esc) and (
                    len(esc[:cut]) - len(esc[:cut].rstrip("\\"))) % 2:
                cut -= 1
            out.append('    "' + esc[:cut] + '"\n')
            esc = esc[cut:]
    out.append(TAIL)
    return "".join(out)


def main():
    text = header(HTML.read_text())
    if "--check" in sys.argv[1:]:
        if HEADER.read_text() != text:
            print("%s is stale: run scripts/status_page.py" % HEADER)
            return 1
        return 0
    HEADER.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
