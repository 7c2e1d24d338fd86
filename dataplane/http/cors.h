// CORS for browser clients: the OpenAI JS SDK (dangerouslyAllowBrowser) sends a
// preflight with Authorization, Content-Type and its x-stainless-* headers; we let every
// origin through because auth is by bearer key, not cookies (no credentials mode).
#pragma once

#include <string_view>

#include <boost/beast/http/fields.hpp>

namespace llmproxy {

// Headers every response carries (allow any origin, expose our own headers to JS).
void AddCorsHeaders(boost::beast::http::fields& fields);

// Headers of a preflight answer (204): allowed methods, and the requested headers echoed
// back (`Access-Control-Request-Headers`), or a default list covering the OpenAI SDKs
// when the browser sent none.
void AddPreflightHeaders(boost::beast::http::fields& fields,
                         std::string_view access_control_request_headers);

}  // namespace llmproxy
