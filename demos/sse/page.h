/*
 * The page served at GET /: it opens an EventSource on /stream and adds
 * each event to a list as it arrives.  It closes the EventSource on "done"
 * and on "error": left open, a browser reconnects to a stream that has
 * ended, and the whole sequence would start again.
 */
#ifndef SSE_PAGE_H
#define SSE_PAGE_H

static const char page_html[] =
    "<!DOCTYPE html>\n"
    "<html lang=\"en\">\n"
    "<head>\n"
    "<meta charset=\"utf-8\">\n"
    "<title>rill: Server-Sent Events</title>\n"
    "<style>\n"
    "  body { font-family: sans-serif; margin: 2em; }\n"
    "  li { font-family: monospace; }\n"
    "  .ev-init, .ev-done { color: #060; }\n"
    "  .ev-progress { color: #036; }\n"
    "  .ev-error { color: #a00; }\n"
    "</style>\n"
    "</head>\n"
    "<body>\n"
    "<h1>Server-Sent Events from a rill generator</h1>\n"
    "<p>Status: <span id=\"status\">connecting</span></p>\n"
    "<ul id=\"events\"></ul>\n"
    "<script>\n"
    "const list = document.getElementById('events');\n"
    "const status = document.getElementById('status');\n"
    "function add(kind, data) {\n"
    "  const li = document.createElement('li');\n"
    "  li.className = 'ev-' + kind;\n"
    "  li.textContent = kind + ' ' + data;\n"
    "  list.appendChild(li);\n"
    "}\n"
    "const source = new EventSource('/stream');\n"
    "source.addEventListener('init', e => { status.textContent = 'started'; add('init', e.data); });\n"
    "source.addEventListener('progress', e => {\n"
    "  const p = JSON.parse(e.data);\n"
    "  status.textContent = p.percentage + '%';\n"
    "  add('progress', e.data);\n"
    "});\n"
    "source.addEventListener('message', e => add('message', e.data));\n"
    "source.addEventListener('done', e => {\n"
    "  add('done', e.data);\n"
    "  status.textContent = 'completed';\n"
    "  source.close();\n"
    "});\n"
    "source.addEventListener('error', e => {\n"
    "  /* A MessageEvent with data is the server's `event: error`; a plain\n"
    "   * Event is the connection failing. */\n"
    "  add('error', e.data !== undefined ? e.data : '{\"error\": \"connection lost\"}');\n"
    "  status.textContent = 'error';\n"
    "  source.close();\n"
    "});\n"
    "</script>\n"
    "</body>\n"
    "</html>\n";

#endif
