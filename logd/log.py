"""Every logger logd and its HTTP side use, declared in one place."""

import logging

source = logging.getLogger("logd.source")
store = logging.getLogger("logd.store")
spool = logging.getLogger("logd.spool")
enrich = logging.getLogger("logd.enrich")
server = logging.getLogger("logd.server")
api = logging.getLogger("query.api")
tail = logging.getLogger("query.tail")
