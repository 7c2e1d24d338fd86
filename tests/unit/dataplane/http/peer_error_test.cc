// The downstream/upstream "peer went away" classification (dataplane/http/peer_error.h).
#include "dataplane/http/peer_error.h"

#include <gtest/gtest.h>
#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/http/error.hpp>

namespace llmproxy {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;

TEST(PeerError, ClosedOrResetConnectionsAreGone) {
  EXPECT_TRUE(IsPeerGone(asio::error::eof));
  EXPECT_TRUE(IsPeerGone(http::error::end_of_stream));
  EXPECT_TRUE(IsPeerGone(asio::error::connection_reset));
  EXPECT_TRUE(IsPeerGone(asio::error::broken_pipe));
  EXPECT_TRUE(IsPeerGone(asio::error::connection_aborted));
  EXPECT_TRUE(IsPeerGone(asio::error::not_connected));
  EXPECT_TRUE(IsPeerGone(asio::ssl::error::stream_truncated));
}

TEST(PeerError, OurOwnCancelTimeoutsAndBadMessagesAreNot) {
  EXPECT_FALSE(IsPeerGone({}));
  EXPECT_FALSE(IsPeerGone(asio::error::operation_aborted));
  EXPECT_FALSE(IsPeerGone(asio::error::timed_out));
  EXPECT_FALSE(IsPeerGone(http::error::partial_message));
  EXPECT_FALSE(IsPeerGone(http::error::bad_version));
  EXPECT_FALSE(IsPeerGone(http::error::header_limit));
  EXPECT_FALSE(IsPeerGone(http::error::body_limit));
  EXPECT_FALSE(IsPeerGone(asio::error::connection_refused));
}

}  // namespace
}  // namespace llmproxy
