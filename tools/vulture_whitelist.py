"""Names that vulture cannot see used, because a framework or pytest reads them by name.

Vulture reads this file as code (it is never imported): each line below counts as a use of the
name. Add a line only for such a callback or marker, with the caller in the comment; a name
nobody reads is deleted instead.
"""

_ = object()

# pytest: a test module's marks.
_.pytestmark
# asyncio.Protocol callbacks (gateway/upstream_http.py).
_.connection_made
_.connection_lost
_.data_received
# logging.Formatter.format (shared/runtime.py).
_.format
# http.server.BaseHTTPRequestHandler (tests that stand up a local HTTP server).
_.do_GET
_.do_POST
_.log_message
# html.parser.HTMLParser (gateway tests that read the docs page).
_.handle_starttag
# schemathesis' APIStateMachine hooks (gateway/tests/test_schemathesis.py, the stateful run).
_.before_call
_.get_call_kwargs
_.after_call
