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

}  // namespace llmproxy
