// The one answer to "did the other side of this connection go away?", for both ends of
// the proxy: the downstream client (dataplane/server, dataplane/proxy) and an upstream
// (dataplane/upstream). A peer that is gone gets no answer and no log line at error level;
// any other failure is a malformed message, a timeout of ours or a local error.
#pragma once

#include <boost/system/error_code.hpp>

namespace llmproxy {

// The peer closed (FIN: EOF before a message, a TLS peer that closed without
// close_notify) or reset the connection, or the kernel saw it gone (broken pipe,
// aborted). Not: operation_aborted (our own cancel or close), a timeout, a malformed or
// truncated message (Beast's partial_message: bytes of a message arrived, then EOF).
bool IsPeerGone(const boost::system::error_code& ec);

}  // namespace llmproxy
