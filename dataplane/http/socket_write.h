// Writing to a plain TCP socket without a trip through the event loop when the kernel
// takes the bytes at once (the common case: responses and upstream requests are small
// and the socket buffer has room). Only what is left goes to an async write. Each async
// operation costs an allocation, a post and a resumption behind every other ready
// handler; under load that queueing was most of the worker's overhead per request.
//
// The socket must be in non-blocking mode (socket.non_blocking(true)); the worker sets
// it on every client and plain upstream socket.
#pragma once

#include <cstddef>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_suffix.hpp>

namespace llmproxy {

template <class ConstBuffers>
boost::asio::awaitable<boost::system::error_code> WriteAll(boost::asio::ip::tcp::socket& socket,
                                                           const ConstBuffers& buffers) {
  namespace asio = boost::asio;
  boost::system::error_code ec;
  const size_t total = asio::buffer_size(buffers);
  size_t sent = socket.write_some(buffers, ec);  // one sendmsg; never blocks
  if (ec == asio::error::would_block || ec == asio::error::try_again) {
    ec = {};
    sent = 0;
  }
  if (ec || sent == total) co_return ec;
  boost::beast::buffers_suffix<ConstBuffers> rest(buffers);
  rest.consume(sent);
  co_await asio::async_write(socket, rest, asio::redirect_error(asio::use_awaitable, ec));
  co_return ec;
}

}  // namespace llmproxy
