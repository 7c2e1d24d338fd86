#include "dataplane/http/cors.h"

namespace llmproxy {

namespace http = boost::beast::http;

namespace {
constexpr std::string_view kExposed =
    "x-llmproxy-backend, x-llmproxy-attempts, x-request-id, openai-processing-ms, "
    "openai-version, openai-organization, retry-after, x-ratelimit-limit-requests, "
    "x-ratelimit-limit-tokens, x-ratelimit-remaining-requests, "
    "x-ratelimit-remaining-tokens, x-ratelimit-reset-requests, x-ratelimit-reset-tokens";
constexpr std::string_view kDefaultAllowHeaders =
    "authorization, content-type, accept, openai-organization, openai-project, "
    "openai-beta, x-request-id, x-stainless-arch, x-stainless-lang, x-stainless-os, "
    "x-stainless-package-version, x-stainless-retry-count, x-stainless-runtime, "
    "x-stainless-runtime-version, x-stainless-timeout, x-stainless-helper-method, "
    "x-stainless-poll-helper";
}  // namespace

void AddCorsHeaders(http::fields& fields) {
  fields.set(http::field::access_control_allow_origin, "*");
  fields.set(http::field::access_control_expose_headers, kExposed);
}

void AddPreflightHeaders(http::fields& fields, std::string_view requested) {
  fields.set(http::field::access_control_allow_origin, "*");
  fields.set(http::field::access_control_allow_methods, "GET, POST, OPTIONS");
  fields.set(http::field::access_control_allow_headers,
             requested.empty() ? kDefaultAllowHeaders : requested);
  fields.set(http::field::access_control_max_age, "86400");
  fields.set(http::field::vary, "Access-Control-Request-Headers");
}

}  // namespace llmproxy
