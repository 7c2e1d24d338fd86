// A hostile client for the tests/hostile/ layer: a plain TCP socket to the in-process
// worker that sends exactly the bytes a test gives it (no HTTP library fixing them up),
// can half-close (shutdown(SHUT_WR)) with the FIN in the same segment as the last bytes,
// and reads everything until the worker closes or a deadline passes. The replies are
// then split strictly (status line, every header line, body by Content-Length or
// chunked framing), so a test asserts the exact bytes that came back and how many
// responses there were: a smuggled request that ran shows up as one too many.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace llmproxy::hostile {

struct RawReply {
  std::string status_line;  // "HTTP/1.1 400 Bad Request"
  int status = 0;
  std::vector<std::pair<std::string, std::string>> fields;  // names lower-cased, in order
  std::string body;                                         // chunked framing removed

  size_t Count(std::string_view lower_name) const;
  std::string Get(std::string_view lower_name) const;  // "" when absent
};

// Splits `data` into responses. `bodiless[i]` marks response i as the answer to a HEAD
// (its Content-Length describes a body that is not sent); 1xx answers never have one.
// Bytes that do not form a complete response are left in `rest` (a test usually
// expects it empty).
std::vector<RawReply> SplitResponses(std::string_view data, std::string* rest,
                                     const std::vector<bool>& bodiless = {});

class RawConnection {
 public:
  RawConnection() = default;
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;
  ~RawConnection();

  bool Connect(uint16_t port);
  // False when the worker already closed or reset the connection.
  bool Send(std::string_view bytes);
  // Sends `bytes` and half-closes: the socket is corked so the FIN leaves in the same
  // segment as the last bytes (the worker sees them together, deterministically).
  bool SendAndShutdown(std::string_view bytes);
  void ShutdownWrite();
  // Reads until `pred(received so far)` holds, the worker closes, or the deadline.
  // True when pred held.
  template <class Pred>
  bool ReadUntil(Pred pred, std::chrono::milliseconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (!pred(received_)) {
      if (closed_ || !ReadOnce(until)) return pred(received_);
    }
    return true;
  }
  // Reads until the worker closes (FIN or reset); true when it did within `timeout`.
  bool ReadUntilClosed(std::chrono::milliseconds timeout);
  void Close();

  const std::string& received() const { return received_; }
  bool closed() const { return closed_; }
  bool reset() const { return reset_; }  // the close was a reset, not a FIN

 private:
  bool ReadOnce(std::chrono::steady_clock::time_point until);

  int fd_ = -1;
  bool closed_ = false;
  bool reset_ = false;
  std::string received_;
};

// Connect, send `bytes` (then half-close when asked), read until the worker closes or
// `timeout`; the replies split as above.
struct Exchange {
  std::string raw;  // every byte received
  bool closed = false;
  std::vector<RawReply> replies;
  std::string rest;
};
Exchange RoundTrip(uint16_t port, std::string_view bytes, bool half_close = false,
                   std::chrono::milliseconds timeout = std::chrono::seconds(10),
                   const std::vector<bool>& bodiless = {});

// "POST <target> HTTP/1.1" with Host, a JSON Content-Type, `extra` header lines (each
// ending in CRLF) and the body framed by Content-Length.
std::string Post(std::string_view target, std::string_view body, std::string_view extra = {});

}  // namespace llmproxy::hostile
