#include "dataplane/http/peer_error.h"

#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/http/error.hpp>

namespace llmproxy {

bool IsPeerGone(const boost::system::error_code& ec) {
  namespace error = boost::asio::error;
  return ec == error::eof || ec == boost::beast::http::error::end_of_stream ||
         ec == error::connection_reset || ec == error::broken_pipe ||
         ec == error::connection_aborted || ec == error::not_connected ||
         ec == boost::asio::ssl::error::stream_truncated;
}

}  // namespace llmproxy
