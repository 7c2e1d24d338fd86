#include "dataplane/protocols/request_body.h"

namespace llmproxy {

BodyPeek PeekRequestBody(std::string_view body) { return ReadRequestJson(body, 0); }

BodyPeek PeekRequestBody(std::string_view body, size_t readable_after) {
  return ReadRequestJson(body, readable_after);
}

bool NeedsRewrite(const BodyPeek& peek, const BodyRewrite& rewrite) {
  if (rewrite.model && (!peek.has_model || *rewrite.model != peek.model)) return true;
  return rewrite.add_include_usage && !peek.has_stream_options;
}

std::string RewriteRequestBody(std::string_view body, const BodyPeek& peek,
                               const BodyRewrite& rewrite) {
  const bool replace_model = rewrite.model && peek.has_model && *rewrite.model != peek.model;
  const bool insert_model = rewrite.model && !peek.has_model;
  const bool add_usage = rewrite.add_include_usage && !peek.has_stream_options;
  static constexpr std::string_view kUsageMember = R"("stream_options":{"include_usage":true})";

  std::string out;
  out.reserve(body.size() + (rewrite.model ? rewrite.model->size() + 16 : 0) +
              (add_usage ? kUsageMember.size() + 1 : 0));
  size_t copied = 0;  // body[0, copied) is in out
  if (insert_model) {
    out.append(body.substr(0, peek.object_begin + 1));
    out += "\"model\":";
    AppendJsonString(out, *rewrite.model);
    if (!peek.object_empty) out += ',';
    copied = peek.object_begin + 1;
  }
  if (replace_model) {
    out.append(body.substr(copied, peek.model_begin - copied));
    AppendJsonString(out, *rewrite.model);
    copied = peek.model_end;
  }
  if (add_usage) {
    out.append(body.substr(copied, peek.object_end - copied));
    if (!peek.object_empty || insert_model) out += ',';
    out += kUsageMember;
    copied = peek.object_end;
  }
  out.append(body.substr(copied));
  return out;
}

}  // namespace llmproxy
