// libFuzzer target: the client request path up to the upstream body. The input is what a
// client sends on one connection (pipelined requests included). Each request is read as
// the worker reads it: a RequestParser with its fields in a 2 KiB-inline arena, the
// server's header limit and no body limit for the head (server/http_server.cc
// RunSession), then the body the way the pipeline reads it (proxy/proxy_pipeline.cc
// ReadBody: a Content-Length body copied raw from the buffer, a chunked one through the
// parser under server.max_body_bytes). A body then goes through PeekRequestBody and the
// model rewrite with every check of body_checks.h.
// The bytes are read twice, all at once and in small pieces (as slow clients send them):
// the requests, bodies and errors seen must be the same.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory_resource>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/optional.hpp>

#include "common/config/config.h"
#include "dataplane/http/http_head.h"
#include "dataplane/server/http_server.h"
#include "tests/fuzz/body_checks.h"

namespace {

namespace http = boost::beast::http;
using llmproxy::ArenaAllocator;
using llmproxy::RequestParser;

// The client's bytes as the socket delivers them: at most `piece` per read.
struct Wire {
  Wire(std::string_view in, size_t max_piece) : input(in), piece(max_piece) {}

  std::string_view input;
  size_t piece;
  size_t delivered = 0;
  boost::beast::flat_buffer buffer;

  bool ReadMore() {
    if (delivered == input.size()) return false;
    const size_t n = std::min(piece, input.size() - delivered);
    std::memcpy(buffer.prepare(n).data(), input.data() + delivered, n);
    buffer.commit(n);
    delivered += n;
    return true;
  }
};

// Reads every request on the connection; returns a transcript of what was seen. Bodies
// are checked once (`check_bodies`): the transcript already shows they are the same.
std::string Session(std::string_view input, size_t piece, bool check_bodies) {
  const llmproxy::ServerLimits limits;
  const uint64_t body_limit = llmproxy::ServerConfig{}.max_body_bytes;
  Wire wire{input, piece};
  alignas(std::max_align_t) std::byte arena_block[2048];
  std::pmr::monotonic_buffer_resource arena{arena_block, sizeof arena_block};
  std::string log;

  for (int request = 0; request < 16; ++request) {
    if (wire.buffer.size() == 0 && !wire.ReadMore()) break;
    arena.release();
    RequestParser parser(std::piecewise_construct, std::make_tuple(),
                         std::make_tuple(ArenaAllocator(&arena)));
    parser.header_limit(static_cast<uint32_t>(limits.header_limit));
    parser.body_limit(boost::none);
    boost::system::error_code ec;
    // The head: parse what is buffered, read more while the parser needs it (as
    // async_read_header does; the end of the input is the client's EOF).
    while (true) {
      const size_t used = parser.put(wire.buffer.data(), ec);
      wire.buffer.consume(used);
      if (ec != http::error::need_more && !(!ec && !parser.is_header_done())) break;
      ec = {};
      if (!wire.ReadMore()) {
        ec = http::error::partial_message;
        break;
      }
    }
    if (ec) {
      // What RunSession answers. Not the error itself: a bad byte is seen at once in a
      // whole header, but only at the end of a header that arrives in pieces (Beast looks
      // for its end first), and at the client's EOF that is a partial message: 400 either way.
      log += ec == http::error::header_limit ? "431\n" : "400 malformed head\n";
      break;
    }
    const auto& req = parser.get();
    log += std::string(req.method_string()) + " " + std::string(req.target()) + " " +
           std::to_string(req.version()) + "\n";
    for (const auto& f : req) {
      log += std::string(f.name_string()) + ": " + std::string(f.value()) + "\n";
    }

    // The body, as ProxyRequest::ReadBody reads it.
    std::string body;
    const auto length = parser.content_length();
    if (length && *length > body_limit) {
      log += "413\n";
      break;
    }
    if (length && !parser.chunked()) {
      const size_t size = static_cast<size_t>(*length);
      while (wire.buffer.size() < size && wire.ReadMore()) {
      }
      if (wire.buffer.size() < size) {
        log += "client left mid-body\n";
        break;
      }
      body.assign(static_cast<const char*>(wire.buffer.data().data()), size);
      wire.buffer.consume(size);
    } else {
      parser.body_limit(body_limit);
      while (true) {
        llmproxy::ParseBuffered(parser, wire.buffer, ec);
        if (ec || parser.is_done()) break;
        if (!wire.ReadMore()) {
          ec = http::error::partial_message;
          break;
        }
      }
      if (ec) {
        // As ReadBody answers, up to the same caveat: a malformed chunked body ending at
        // the client's EOF may be a partial message when it arrives in pieces.
        log += ec == http::error::body_limit ? "413\n" : "bad or partial body\n";
        break;
      }
      body = std::move(parser.get().body());
    }
    log += "body " + std::to_string(body.size()) + "\n";
    const llmproxy::BodyPeek peek = llmproxy::PeekRequestBody(body);
    log += peek.ok() ? "model " + peek.model + "\n" : "400 " + std::string(peek.error) + "\n";
    if (check_bodies) llmproxy::fuzz::CheckBody(body);
    if (!parser.keep_alive()) break;
  }
  return log;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::string whole = Session(input, input.size() + 1, true);
  // A piece size from the input itself, so seeds need no framing of their own.
  const size_t piece = 1 + (size == 0 ? 0 : data[size / 2] % 61);
  const std::string pieces = Session(input, piece, false);
  if (whole != pieces) {
    std::fprintf(stderr,
                 "fuzz invariant failed: read whole and in %zu-byte pieces differ\n"
                 "--- whole:\n%s--- pieces:\n%s",
                 piece, whole.c_str(), pieces.c_str());
    std::abort();
  }
  return 0;
}
