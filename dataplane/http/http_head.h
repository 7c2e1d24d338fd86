// Writing HTTP/1.1 message heads straight into a reusable std::string, for the hot path.
// Beast's serializer walks a buffers_cat_view of every field on each write, which cost a
// fifth of the worker's CPU per proxied request; a head here is one append per field
// into a buffer that keeps its capacity across keep-alive requests, then sent with the
// body in one gather write (one sendmsg).
//
// Field names and values are written as given: callers pass values Beast's parser has
// already validated (no CR/LF) or our own constants.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory_resource>
#include <string>
#include <string_view>

#include <boost/beast/http/error.hpp>
#include <boost/beast/http/fields.hpp>

namespace llmproxy {

// Header fields whose elements are carved from a per-request arena (a
// std::pmr::monotonic_buffer_resource with an inline first block) instead of one malloc
// per field: parsed client requests and upstream response heads use these.
using ArenaAllocator = std::pmr::polymorphic_allocator<char>;
using ArenaFields = boost::beast::http::basic_fields<ArenaAllocator>;

// "HTTP/1.1 200 OK\r\n" (version 10 or 11, as Beast encodes it).
void AppendStatusLine(std::string& out, unsigned version, unsigned status);

// "POST /v1/chat/completions HTTP/1.1\r\n"
void AppendRequestLine(std::string& out, std::string_view method, std::string_view target);

// "name: value\r\n"
void AppendField(std::string& out, std::string_view name, std::string_view value);
void AppendField(std::string& out, std::string_view name, uint64_t value);

// Every field of `fields`, in order.
template <class Fields>
void AppendFields(std::string& out, const Fields& fields) {
  for (const auto& f : fields) AppendField(out, f.name_string(), f.value());
}

// The Connection header a response needs: HTTP/1.1 keeps alive unless told "close";
// HTTP/1.0 closes unless told "keep-alive". Nothing when the default applies.
void AppendConnection(std::string& out, unsigned version, bool keep_alive);

// The CORS headers every response carries (cors.h AddCorsHeaders, as one block).
std::string_view CorsFieldBlock();

// Feeds what `buffer` already holds to `parser` (consuming it) until the parser is done,
// needs bytes that have not arrived (need_more), has no room left in a buffer_body piece
// (need_buffer), or fails. Neither need_* is an error here: the caller reads more, or
// hands the piece on. Parsing in place spares an async read that would complete at once
// but resume the request only after every other ready handler.
template <class Parser, class DynamicBuffer>
void ParseBuffered(Parser& parser, DynamicBuffer& buffer, boost::system::error_code& ec) {
  namespace http = boost::beast::http;
  ec = {};
  while (!parser.is_done() && buffer.size() > 0) {
    const size_t used = parser.put(buffer.data(), ec);
    buffer.consume(used);
    if (ec == http::error::need_more || ec == http::error::need_buffer) {
      ec = {};
      return;
    }
    if (ec || used == 0) return;
  }
}

}  // namespace llmproxy
